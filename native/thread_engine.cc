// The thread-pool engine: where io_uring is unavailable (old kernel, seccomp,
// io_uring_disabled) or asked for. `queueDepth` worker threads, started on
// first use, run preadv/pwritev2/fdatasync; completions go back to the JS
// thread through a uv_async.
//
// Locking: one mutex guards the queues, the completed list and the counters.
// Order (engine.h): a worker takes a queued read before a queued write or
// flush (while a write waits, reads take all threads but one). A flush is a
// barrier for writes: the worker that takes it waits until no write is
// running, and no worker takes a write or flush queued after it until it is
// done, so fdatasync covers exactly the writes submitted before it. Reads go
// on meanwhile.
//
// Stopping: Close sets `stopping_` and takes the queue back under the lock, so
// no worker starts another request; it joins the workers (each finishes the
// request it is running) and hands back everything not delivered. A request
// never runs after Close returns: its memory may be unmapped by then.
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "engine.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

namespace blockfork {
namespace {

// musl has pwritev2 only from 1.2.5, and no RWF_* before it: outside glibc,
// make the system call itself, so that one musl binary runs on every musl.
// (On 64-bit the offset goes whole in pos_l; pos_h is 0.)
ssize_t WriteV2(int fd, const iovec* iov, int count, off_t offset, int flags) {
#ifdef __GLIBC__
  return pwritev2(fd, iov, count, offset, flags);
#else
  // syscall() takes longs: widen every argument, so that none arrives with
  // stray upper bits.
  long n = syscall(SYS_pwritev2, static_cast<long>(fd), iov, static_cast<long>(count), static_cast<long>(offset), 0L,
                   static_cast<long>(flags));
  // Where there is no pwritev2 (an emulator, a sandbox), answer as glibc's
  // wrapper does: a plain write without it, EOPNOTSUPP for flags.
  if (n < 0 && errno == ENOSYS) {
    if (flags == 0) return pwritev(fd, iov, count, offset);
    errno = EOPNOTSUPP;
  }
  return n;
#endif
}

struct AsyncHandle {
  uv_async_t async;
};

class ThreadEngine : public Engine {
 public:
  ThreadEngine(HandleCloses* closes, int fd, unsigned threads, CompletionSink* sink)
      : closes_(closes), fd_(fd), threadCount_(threads), sink_(sink) {}

  const char* Kind() const override { return "threads"; }

  int Setup(uv_loop_t* loop) {
    handle_ = new AsyncHandle{};
    handle_->async.data = this;
    int r = uv_async_init(loop, &handle_->async, OnCompleted);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      return r;
    }
    uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->async));
    return 0;
  }

  // Threads start on first use, so that an engine that is never used costs
  // none. std::thread throws where pthread_create fails (EAGAIN under a pids
  // cgroup or RLIMIT_NPROC): that becomes -errno here, never an exception
  // through N-API. With some threads started the engine runs on those.
  int Ready(const char** syscallName) override {
    if (!workers_.empty()) return 0;
    for (unsigned i = 0; i < threadCount_; i++) {
      try {
        workers_.emplace_back(&ThreadEngine::Work, this);
      } catch (const std::system_error& e) {
        if (!workers_.empty()) break;
        *syscallName = "pthread_create";
        return e.code().value() > 0 ? -e.code().value() : -EAGAIN;
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = static_cast<unsigned>(workers_.size());
    return 0;
  }

  void Submit(Request* requests, size_t count) override {
    if (outstanding_ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->async));
    outstanding_ += count;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (size_t i = 0; i < count; i++) (requests[i].op == Op::Read ? reads_ : queue_).push_back(&requests[i]);
    }
    if (count == 1) {
      wake_.notify_one();
    } else {
      wake_.notify_all();
    }
  }

  std::vector<Request*> Close() override {
    std::vector<Request*> abandoned;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      abandoned.assign(reads_.begin(), reads_.end());
      abandoned.insert(abandoned.end(), queue_.begin(), queue_.end());
      reads_.clear();
      queue_.clear();
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    abandoned.insert(abandoned.end(), completed_.begin(), completed_.end());
    completed_.clear();
    if (handle_ != nullptr) {
      CloseHandle(closes_, reinterpret_cast<uv_handle_t*>(&handle_->async),
                  [](uv_handle_t* h) { delete reinterpret_cast<AsyncHandle*>(h); });
      handle_ = nullptr;
    }
    return abandoned;
  }

 private:
  // Under the lock: the queue a worker takes its next request from, or
  // nullptr. A read first, but with a write or flush ready the last free
  // thread goes to it, so that reads never starve the writeout.
  std::deque<Request*>* NextQueue() {
    bool writeReady = !queue_.empty() && !barrier_;
    if (!reads_.empty() && (!writeReady || readsRunning_ + 1 < started_ || started_ <= 1)) return &reads_;
    return writeReady ? &queue_ : nullptr;
  }

  void Work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      std::deque<Request*>* from = nullptr;
      wake_.wait(lock, [this, &from] { return stopping_ || (from = NextQueue()) != nullptr; });
      if (stopping_) return;
      Request* r = from->front();
      from->pop_front();
      if (r->op == Op::Flush) {
        barrier_ = true;
        idle_.wait(lock, [this] { return writesRunning_ == 0; });
      }
      if (r->op == Op::Read) readsRunning_++;
      if (r->op == Op::Write) writesRunning_++;
      lock.unlock();
      Execute(r);
      lock.lock();
      if (r->op == Op::Read) readsRunning_--;
      if (r->op == Op::Write && --writesRunning_ == 0) idle_.notify_all();
      if (r->op == Op::Flush) barrier_ = false;
      // A slot came free, or the barrier lifted: the next request may be one
      // that a waiting worker could not take before.
      wake_.notify_all();
      completed_.push_back(r);
      uv_async_send(&handle_->async);
    }
  }

  void Execute(Request* r) {
    ssize_t n;
    do {
      switch (r->op) {
        case Op::Read:
          n = preadv(fd_, r->iov.data(), static_cast<int>(r->iov.size()), static_cast<off_t>(r->offset));
          break;
        case Op::Write:
          n = WriteV2(fd_, r->iov.data(), static_cast<int>(r->iov.size()), static_cast<off_t>(r->offset),
                      r->dsync ? RWF_DSYNC : 0);
          break;
        case Op::Flush:
          n = fdatasync(fd_);
          break;
      }
    } while (n < 0 && errno == EINTR);
    r->result = n < 0 ? -errno : static_cast<double>(n);
  }

  static void OnCompleted(uv_async_t* async) { static_cast<ThreadEngine*>(async->data)->Deliver(); }

  void Deliver() {
    std::vector<Request*> done;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done.swap(completed_);
    }
    outstanding_ -= done.size();
    if (outstanding_ == 0 && handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->async));
    // The sink's callbacks may close the engine, which deletes this object:
    // from here on, touch only locals.
    CompletionSink* sink = sink_;
    for (Request* r : done) sink->Complete(r);
    sink->Drained();
  }

  HandleCloses* closes_;
  int fd_;
  unsigned threadCount_;
  CompletionSink* sink_;
  AsyncHandle* handle_ = nullptr;
  size_t outstanding_ = 0;  // JS thread only: submitted, not yet delivered
  std::vector<std::thread> workers_;

  std::mutex mutex_;
  std::condition_variable wake_;  // work queued, a request done, barrier lifted, or stopping
  std::condition_variable idle_;  // writesRunning_ fell to 0
  std::deque<Request*> reads_;
  std::deque<Request*> queue_;  // writes and flushes, in submission order
  std::vector<Request*> completed_;
  unsigned started_ = 0;  // workers running (Ready may start fewer than asked)
  unsigned readsRunning_ = 0;
  unsigned writesRunning_ = 0;
  bool barrier_ = false;
  bool stopping_ = false;
};

}  // namespace

Engine* CreateThreadEngine(uv_loop_t* loop, HandleCloses* closes, int fd, unsigned queueDepth, CompletionSink* sink,
                           int* err, const char** syscallName) {
  // One thread per slot of the queue, as io_uring has one ring entry per
  // slot, up to a bound past which threads cost more than they overlap.
  constexpr unsigned kMaxThreads = 128;
  ThreadEngine* engine = new ThreadEngine(closes, fd, queueDepth < kMaxThreads ? queueDepth : kMaxThreads, sink);
  int r = engine->Setup(loop);
  if (r != 0) {
    delete engine;
    *err = r;
    *syscallName = "uv_async_init";
    return nullptr;
  }
  return engine;
}

}  // namespace blockfork
