// The I/O engine interface: batches of vectored reads and writes, and flush.
//
// A request's life, all transitions on the JS thread except "running":
//
//   parsed ──Submit──▶ queued ──(slot free)──▶ running ──▶ completed ──▶ delivered
//                        │                                    │
//                        └────────────── Close ───────────────┴──▶ abandoned
//
// parsed:    validated by EngineWrap (types, slab memory, alignment, bounds)
//            before the engine sees it; a bad request throws and nothing of
//            its batch is queued. Each slab is pinned the moment its buffer
//            is read (reading a buffer may run the caller's JS, which could
//            otherwise release a slab already checked), and the batch holds
//            its own reference to every slab's ArrayBuffer, not the caller's
//            arrays, which the caller may empty or reuse at once.
// queued:    waits inside the engine while `queueDepth` requests run (reads
//            in a queue of their own, ahead of writes: see Submit).
// running:   owned by the kernel (io_uring) or a worker thread; the iovecs
//            (the request's own) and the pinned slabs stay alive.
// completed: `result` holds bytes moved or -errno; the engine hands it to its
//            sink on the JS thread, never from inside Submit.
// delivered: when the last request of a batch completes, the batch's
//            callback gets every result at once and the batch is freed.
// abandoned: Close stops the engine: queued requests never start, running
//            ones are waited for, and every request not delivered is handed
//            back to the caller of Close, to be freed without a callback
//            (environment teardown: see instance.h).
#pragma once
#include <sys/uio.h>
#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <vector>

#include "handle_close.h"

namespace blockfork {

enum class Op : uint8_t { Read, Write, Flush };

struct Batch;

struct Request {
  Op op = Op::Read;
  bool dsync = false;
  uint64_t offset = 0;
  std::vector<iovec> iov;
  double result = 0;
  Batch* batch = nullptr;
};

// Receives completed requests, on the JS thread.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void Complete(Request* request) = 0;
  // Called after a round of Complete() calls, as the engine's last act in
  // that callback: the sink may let go of the engine here, never inside
  // Complete(), where the engine is still walking its list.
  virtual void Drained() = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const char* Kind() const = 0;
  // Makes sure the engine can take a request now (the thread engine starts
  // its threads on first use): 0, or -errno with *syscall set, and then
  // nothing may be submitted.
  virtual int Ready(const char** syscall) = 0;
  // Queues the requests and starts each when a slot is free. A flush runs only
  // after every write submitted before it has completed, and no write
  // submitted after it starts before it has completed. Reads are not ordered
  // against writes or flushes: a queued read takes a free slot before queued
  // writes do (all but one slot, while a write waits), and never waits for a
  // flush, since a reader waits on the disk and a writer only on its commit.
  // A batch's requests are handed over together, so that the engine can
  // start all of them at once (one io_uring_enter for the batch, not one per
  // request). `requests` is the batch's own array, which stays in place until
  // the batch is freed, so the engine may hold pointers into it.
  virtual void Submit(Request* requests, size_t count) = 0;
  // Stops the engine and frees its resources, returning every request not
  // delivered (none when nothing is in flight); none of them is touched by
  // the kernel or a thread any more.
  virtual std::vector<Request*> Close() = 0;
};

// Each returns nullptr and sets *err (-errno) and *syscall on failure.
// Their handles are closed through `closes` (handle_close.h).
Engine* CreateUringEngine(uv_loop_t* loop, HandleCloses* closes, int fd, unsigned queueDepth, CompletionSink* sink, int* err,
                          const char** syscall);
Engine* CreateThreadEngine(uv_loop_t* loop, HandleCloses* closes, int fd, unsigned queueDepth, CompletionSink* sink, int* err,
                           const char** syscall);
// 0 when an io_uring can be set up here, else -errno.
int ProbeUring();

void InitEngine(Napi::Env env, Napi::Object exports);

}  // namespace blockfork
