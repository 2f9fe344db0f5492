// The I/O engine interface: batches of vectored reads and writes, and flush.
//
// A request's life, all transitions on the JS thread except "running":
//
//   parsed ──Submit──▶ queued ──(slot free)──▶ running ──▶ completed ──▶ delivered
//
// parsed:    validated by EngineWrap (alignment, bounds, types) before the
//            engine sees it; a bad request throws and nothing is queued.
// queued:    waits inside the engine while `queueDepth` requests run.
// running:   owned by the kernel (io_uring) or a worker thread; its iovecs
//            and the buffers they point into must stay alive: the Batch owns
//            the iovecs and a reference to the JS array holding the buffers,
//            and pins every slab it touches.
// completed: `result` holds bytes moved or -errno; the engine hands it to its
//            sink on the JS thread, never from inside Submit.
// delivered: when the last request of a batch completes, the batch's
//            callback gets every result at once and the batch is freed.
#pragma once
#include <sys/uio.h>
#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <vector>

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
  // Queues the request and starts it when a slot is free. A flush runs only
  // after every request submitted before it has completed.
  virtual void Submit(Request* request) = 0;
  // Called with nothing in flight: stops the engine and frees its resources.
  virtual void Close() = 0;
};

// Each returns nullptr and sets *err (-errno) and *syscall on failure.
Engine* CreateUringEngine(uv_loop_t* loop, int fd, unsigned queueDepth, CompletionSink* sink, int* err, const char** syscall);
Engine* CreateThreadEngine(uv_loop_t* loop, int fd, unsigned queueDepth, CompletionSink* sink, int* err, const char** syscall);
// 0 when an io_uring can be set up here, else -errno.
int ProbeUring();

void InitEngine(Napi::Env env, Napi::Object exports);

}  // namespace blockfork
