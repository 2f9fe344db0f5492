// The io_uring engine, by raw syscalls (no liburing: a build needs nothing but
// the toolchain and Node's headers).
//
// No thread per request: requests go into the submission ring, completions
// come back on the JS thread, where a uv_poll watches an eventfd registered
// with the ring. At most `depth` requests are in the ring at once (so the
// completion ring, twice as large, never overflows); the rest wait in
// the queues, and each reaped completion makes room for the next before any JS
// runs, so the device stays busy while callbacks run.
//
// Order (engine.h): reads wait in a queue of their own and take a free slot
// before any queued write or flush (all slots but one while a write waits),
// since a reader waits on the disk and a writer only on its commit. Writes
// and flushes keep their order among themselves: a flush enters the ring
// only once no write is in it, and no write enters while a flush is in it.
// The engine holds that barrier itself, not the kernel: IOSQE_IO_DRAIN would
// hold the reads back as well.
//
// A request in the ring is first unconsumed (its entry is in the submission
// queue, behind the kernel's head), then in the kernel (consumed: a
// completion will come). io_uring_enter may consume fewer entries than asked
// (it ran short of memory) or none (EAGAIN; EBUSY while completions wait to
// be reaped): the rest stay in the queue, in order, and are offered again at
// the next enter, from a completion or from a retry timer that backs off
// (1 ms doubling to 128 ms), never from a loop on the JS thread. Any other
// error takes the unconsumed entries back and fails their requests.
//
//   reads_ ─┐
//           ├─Pump──▶ unconsumed_ ──enter──▶ in the kernel ──CQE──▶ completed
//   queued_ ┘ (writes, flushes)
//
// Close with requests in the kernel (environment teardown only) waits for
// their completions: until then the kernel may still write their memory.
#include <linux/io_uring.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <vector>

#include "engine.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

namespace blockfork {
namespace {

int SysSetup(unsigned entries, io_uring_params* p) {
  return static_cast<int>(syscall(__NR_io_uring_setup, entries, p));
}
int SysEnter(int fd, unsigned toSubmit, unsigned minComplete, unsigned flags) {
  return static_cast<int>(syscall(__NR_io_uring_enter, fd, toSubmit, minComplete, flags, nullptr, 0));
}
int SysRegister(int fd, unsigned opcode, const void* arg, unsigned args) {
  return static_cast<int>(syscall(__NR_io_uring_register, fd, opcode, arg, args));
}

// What the uv_close callbacks free once libuv is done with the handles.
struct PollHandle {
  uv_poll_t poll;
  int eventFd;
};
struct RetryTimer {
  uv_timer_t timer;
};

constexpr uint64_t kFirstRetryMs = 1;
constexpr uint64_t kLastRetryMs = 128;

class UringEngine : public Engine {
 public:
  UringEngine(HandleCloses* closes, int fd, CompletionSink* sink) : closes_(closes), fd_(fd), sink_(sink) {}
  ~UringEngine() override { Unmap(); }

  const char* Kind() const override { return "io_uring"; }

  // Returns 0 or -errno (and the syscall that failed).
  int Setup(uv_loop_t* loop, unsigned depth, const char** syscallName) {
    io_uring_params p;
    std::memset(&p, 0, sizeof p);
    *syscallName = "io_uring_setup";
    ringFd_ = SysSetup(depth, &p);
    if (ringFd_ < 0) return -errno;
    depth_ = p.sq_entries < depth ? p.sq_entries : depth;

    *syscallName = "mmap";
    sqLen_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cqLen_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) sqLen_ = cqLen_ = sqLen_ > cqLen_ ? sqLen_ : cqLen_;
    sqRing_ = mmap(nullptr, sqLen_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_, IORING_OFF_SQ_RING);
    if (sqRing_ == MAP_FAILED) return Fail();
    cqRing_ = single ? sqRing_
                     : mmap(nullptr, cqLen_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_,
                            IORING_OFF_CQ_RING);
    if (cqRing_ == MAP_FAILED) return Fail();
    sqesLen_ = p.sq_entries * sizeof(io_uring_sqe);
    void* sqes = mmap(nullptr, sqesLen_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) return Fail();
    sqes_ = static_cast<io_uring_sqe*>(sqes);

    char* sq = static_cast<char*>(sqRing_);
    sqHead_ = reinterpret_cast<unsigned*>(sq + p.sq_off.head);
    sqTail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
    sqMask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
    sqArray_ = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
    char* cq = static_cast<char*>(cqRing_);
    cqHead_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
    cqTail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
    cqMask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);

    *syscallName = "eventfd";
    int eventFd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (eventFd < 0) return Fail();
    *syscallName = "io_uring_register";
    if (SysRegister(ringFd_, IORING_REGISTER_EVENTFD, &eventFd, 1) != 0) {
      int err = -errno;
      close(eventFd);
      Unmap();
      return err;
    }
    handle_ = new PollHandle{};
    handle_->eventFd = eventFd;
    handle_->poll.data = this;
    *syscallName = "uv_poll_init";
    int r = uv_poll_init(loop, &handle_->poll, eventFd);
    if (r != 0) {
      close(eventFd);
      delete handle_;
      handle_ = nullptr;
      Unmap();
      return r;
    }
    uv_poll_start(&handle_->poll, UV_READABLE, OnReadable);
    // An idle engine must not keep the process alive; the timer never does
    // (the poll handle is referenced while anything is held).
    uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    retry_ = new RetryTimer{};
    uv_timer_init(loop, &retry_->timer);
    retry_->timer.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&retry_->timer));
    return 0;
  }

  int Ready(const char** /*syscallName*/) override { return 0; }

  void Submit(Request* requests, size_t count) override {
    if (held_ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    held_ += count;
    for (size_t i = 0; i < count; i++) (requests[i].op == Op::Read ? reads_ : queued_).push_back(&requests[i]);
    Pump();
  }

  std::vector<Request*> Close() override {
    std::vector<Request*> abandoned(reads_.begin(), reads_.end());
    abandoned.insert(abandoned.end(), queued_.begin(), queued_.end());
    reads_.clear();
    queued_.clear();
    if (ringFd_ >= 0) {
      // Unconsumed entries are taken back: the kernel never saw them.
      __atomic_store_n(sqTail_, *sqTail_ - static_cast<unsigned>(unconsumed_.size()), __ATOMIC_RELEASE);
      for (Request* r : unconsumed_) LeaveRing(r);
      abandoned.insert(abandoned.end(), unconsumed_.begin(), unconsumed_.end());
      unconsumed_.clear();
      while (inRing_ > 0) {
        if (SysEnter(ringFd_, 0, 1, IORING_ENTER_GETEVENTS) < 0 && errno != EINTR) break;
        Harvest(&abandoned);
      }
    }
    abandoned.insert(abandoned.end(), failed_.begin(), failed_.end());
    failed_.clear();
    if (retry_ != nullptr) {
      uv_timer_stop(&retry_->timer);
      CloseHandle(closes_, reinterpret_cast<uv_handle_t*>(&retry_->timer),
                  [](uv_handle_t* h) { delete reinterpret_cast<RetryTimer*>(h); });
      retry_ = nullptr;
    }
    if (handle_ != nullptr) {
      uv_poll_stop(&handle_->poll);
      CloseHandle(closes_, reinterpret_cast<uv_handle_t*>(&handle_->poll), [](uv_handle_t* h) {
        PollHandle* handle = reinterpret_cast<PollHandle*>(h);
        close(handle->eventFd);
        delete handle;
      });
      handle_ = nullptr;
    }
    Unmap();
    return abandoned;
  }

 private:
  int Fail() {
    int err = -errno;
    Unmap();
    return err;
  }

  void Unmap() {
    if (sqes_ != nullptr) munmap(sqes_, sqesLen_);
    if (cqRing_ != nullptr && cqRing_ != MAP_FAILED && cqRing_ != sqRing_) munmap(cqRing_, cqLen_);
    if (sqRing_ != nullptr && sqRing_ != MAP_FAILED) munmap(sqRing_, sqLen_);
    if (ringFd_ >= 0) close(ringFd_);
    sqes_ = nullptr;
    cqRing_ = sqRing_ = nullptr;
    ringFd_ = -1;
  }

  // The next request that may enter the ring, taken off its queue: a read
  // first, up to all slots but one while a write or flush is ready to go (so
  // that reads never starve the writeout); else the oldest write or flush,
  // unless the barrier holds it back (a flush waits for the writes in the
  // ring to complete, a write for the flush in it).
  Request* Next() {
    bool writeReady = !queued_.empty() && !flushInRing_ && (queued_.front()->op != Op::Flush || writesInRing_ == 0);
    std::deque<Request*>* from = nullptr;
    if (!reads_.empty() && (!writeReady || readsInRing_ + 1 < depth_ || depth_ == 1)) {
      from = &reads_;
    } else if (writeReady) {
      from = &queued_;
    }
    if (from == nullptr) return nullptr;
    Request* r = from->front();
    from->pop_front();
    return r;
  }

  void EnterRing(Request* r) {
    inRing_++;
    if (r->op == Op::Read) readsInRing_++;
    if (r->op == Op::Write) writesInRing_++;
    if (r->op == Op::Flush) flushInRing_ = true;
  }

  // Completed, or taken back unconsumed.
  void LeaveRing(Request* r) {
    inRing_--;
    if (r->op == Op::Read) readsInRing_--;
    if (r->op == Op::Write) writesInRing_--;
    if (r->op == Op::Flush) flushInRing_ = false;
  }

  // Moves queued requests into free ring slots, then offers the kernel every
  // entry it has not consumed yet.
  void Pump() {
    unsigned tail = *sqTail_;
    unsigned added = 0;
    Request* r;
    while (inRing_ < depth_ && (r = Next()) != nullptr) {
      unsigned index = tail & sqMask_;
      io_uring_sqe* sqe = &sqes_[index];
      std::memset(sqe, 0, sizeof *sqe);
      sqe->fd = fd_;
      sqe->user_data = reinterpret_cast<uint64_t>(r);
      if (r->op == Op::Flush) {
        // No write is in the ring (Next held it back until they completed), and none enters until this completes.
        sqe->opcode = IORING_OP_FSYNC;
        sqe->fsync_flags = IORING_FSYNC_DATASYNC;
      } else {
        sqe->opcode = r->op == Op::Read ? IORING_OP_READV : IORING_OP_WRITEV;
        sqe->off = r->offset;
        sqe->addr = reinterpret_cast<uint64_t>(r->iov.data());
        sqe->len = static_cast<unsigned>(r->iov.size());
        if (r->dsync) sqe->rw_flags = RWF_DSYNC;
      }
      sqArray_[index] = index;
      unconsumed_.push_back(r);
      tail++;
      added++;
      EnterRing(r);
    }
    if (added > 0) __atomic_store_n(sqTail_, tail, __ATOMIC_RELEASE);
    Enter();
  }

  void Enter() {
    if (unconsumed_.empty()) return;
    int consumed;
    do {
      consumed = SysEnter(ringFd_, static_cast<unsigned>(unconsumed_.size()), 0, 0);
    } while (consumed < 0 && errno == EINTR);
    if (consumed >= 0) {
      unconsumed_.erase(unconsumed_.begin(), unconsumed_.begin() + consumed);
      if (unconsumed_.empty()) {
        retryMs_ = 0;
      } else {
        Retry();
      }
      return;
    }
    if (errno == EAGAIN || errno == EBUSY) {
      Retry();
      return;
    }
    // Nothing was consumed: take the entries back and fail their requests.
    int err = -errno;
    __atomic_store_n(sqTail_, *sqTail_ - static_cast<unsigned>(unconsumed_.size()), __ATOMIC_RELEASE);
    for (Request* r : unconsumed_) {
      LeaveRing(r);
      r->result = err;
      failed_.push_back(r);
    }
    unconsumed_.clear();
    Wake();
  }

  void Retry() {
    retryMs_ = retryMs_ == 0 ? kFirstRetryMs : (retryMs_ * 2 < kLastRetryMs ? retryMs_ * 2 : kLastRetryMs);
    uv_timer_start(&retry_->timer, OnRetry, retryMs_, 0);
  }

  static void OnRetry(uv_timer_t* timer) { static_cast<UringEngine*>(timer->data)->Pump(); }

  // Failed submissions are delivered from the poll callback, never from
  // inside Submit: callers may rely on completion being asynchronous.
  void Wake() {
    uint64_t one = 1;
    ssize_t ignored = write(handle_->eventFd, &one, sizeof one);
    (void)ignored;
  }

  static void OnReadable(uv_poll_t* poll, int /*status*/, int /*events*/) {
    static_cast<UringEngine*>(poll->data)->Reap();
  }

  // Moves the completions in the ring to *done.
  void Harvest(std::vector<Request*>* done) {
    unsigned head = *cqHead_;
    unsigned tail = __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE);
    while (head != tail) {
      io_uring_cqe* cqe = &cqes_[head & cqMask_];
      Request* r = reinterpret_cast<Request*>(cqe->user_data);
      r->result = cqe->res;
      done->push_back(r);
      head++;
      LeaveRing(r);
    }
    __atomic_store_n(cqHead_, head, __ATOMIC_RELEASE);
  }

  void Reap() {
    uint64_t count;
    ssize_t ignored = read(handle_->eventFd, &count, sizeof count);
    (void)ignored;
    std::vector<Request*> done;
    done.swap(failed_);
    Harvest(&done);
    // Refill the ring before any JS runs.
    Pump();
    held_ -= done.size();
    if (held_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    // The sink's callbacks may close the engine, which deletes this object:
    // from here on, touch only locals.
    CompletionSink* sink = sink_;
    for (Request* r : done) sink->Complete(r);
    sink->Drained();
  }

  HandleCloses* closes_;
  int fd_;
  CompletionSink* sink_;
  int ringFd_ = -1;
  unsigned depth_ = 0;
  unsigned inRing_ = 0;  // unconsumed, or in the kernel: at most depth_
  unsigned readsInRing_ = 0;
  unsigned writesInRing_ = 0;
  bool flushInRing_ = false;
  size_t held_ = 0;      // submitted, not yet delivered: the loop stays alive
  std::deque<Request*> reads_;
  std::deque<Request*> queued_;  // writes and flushes, in submission order
  std::deque<Request*> unconsumed_;  // in submission-queue order
  std::vector<Request*> failed_;
  PollHandle* handle_ = nullptr;
  RetryTimer* retry_ = nullptr;
  uint64_t retryMs_ = 0;

  void* sqRing_ = nullptr;
  void* cqRing_ = nullptr;
  size_t sqLen_ = 0, cqLen_ = 0, sqesLen_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  unsigned *sqHead_ = nullptr, *sqTail_ = nullptr, *sqArray_ = nullptr;
  unsigned sqMask_ = 0;
  unsigned *cqHead_ = nullptr, *cqTail_ = nullptr;
  unsigned cqMask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
};

}  // namespace

Engine* CreateUringEngine(uv_loop_t* loop, HandleCloses* closes, int fd, unsigned queueDepth, CompletionSink* sink,
                          int* err, const char** syscallName) {
  UringEngine* engine = new UringEngine(closes, fd, sink);
  int r = engine->Setup(loop, queueDepth, syscallName);
  if (r != 0) {
    delete engine;
    *err = r;
    return nullptr;
  }
  return engine;
}

int ProbeUring() {
  // Once per process, by whichever thread asks first (a magic static).
  static const int result = [] {
    io_uring_params p;
    std::memset(&p, 0, sizeof p);
    int fd = SysSetup(1, &p);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
  }();
  return result;
}

}  // namespace blockfork
