// createEngine(options) and the JS face of an engine: submit, flush, close.
//
// Everything a request carries is checked here, before the engine or the
// kernel sees it: types, alignment of address, offset and length to the
// device, bounds, open handle, writable device, memory that is a live slab of
// this environment (pinned as it is found: engine.h).
// A bad request throws TypeError/RangeError and nothing of its batch is queued.
// A system call that fails before anything is queued (a thread that cannot be
// started) is returned as { errno, syscall }, with nothing counted in flight.
#include <limits.h>
#include <sys/uio.h>

#include <memory>
#include <string>

#include "engine.h"
#include "errno_result.h"
#include "instance.h"
#include "slab.h"

namespace blockfork {

struct Batch {
  std::vector<Request> requests;
  size_t remaining = 0;
  bool isFlush = false;
  Napi::FunctionReference done;
  // Every slab the batch's buffers lie in, one pin per buffer, taken as each
  // buffer is read; released with the batch, however it ends (parsed badly,
  // delivered, or abandoned).
  std::vector<Slab*> pins;
  // One reference per slab: the memory stays reachable, and so unfinalized,
  // whatever the caller does with its own arrays and views meanwhile.
  std::vector<Napi::Reference<Napi::ArrayBuffer>> memory;
  uint64_t id = 0;

  ~Batch() {
    for (Slab* slab : pins) UnpinSlab(slab);
  }
};

namespace {

struct EngineOptions {
  int fd = -1;
  std::string kind;
  uint32_t queueDepth = 1;
  uint64_t sectorSize = 512;
  uint64_t memoryAlignment = 512;
  double size = 0;
  bool readOnly = true;
};

bool WholeNumber(Napi::Value v, double min, double max, double* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d))) return false;
  *out = d;
  return true;
}

bool PowerOfTwo(double d) {
  uint64_t u = static_cast<uint64_t>(d);
  return u != 0 && (u & (u - 1)) == 0;
}

void ParseOptions(Napi::Env env, Napi::Object o, EngineOptions* out) {
  double fd, depth, sector, align, size;
  if (!WholeNumber(o.Get("fd"), 0, 2147483647.0, &fd)) throw Napi::TypeError::New(env, "createEngine: fd must be a file descriptor");
  Napi::Value kind = o.Get("kind");
  std::string k = kind.IsString() ? kind.As<Napi::String>().Utf8Value() : "";
  if (k != "io_uring" && k != "threads") throw Napi::TypeError::New(env, "createEngine: kind must be 'io_uring' or 'threads'");
  if (!WholeNumber(o.Get("queueDepth"), 1, 4096, &depth)) throw Napi::RangeError::New(env, "createEngine: queueDepth must be an integer from 1 to 4096");
  if (!WholeNumber(o.Get("sectorSize"), 1, 1 << 20, &sector) || !PowerOfTwo(sector)) throw Napi::RangeError::New(env, "createEngine: sectorSize must be a power of two");
  if (!WholeNumber(o.Get("memoryAlignment"), 1, 1 << 20, &align) || !PowerOfTwo(align)) throw Napi::RangeError::New(env, "createEngine: memoryAlignment must be a power of two");
  if (!WholeNumber(o.Get("size"), 0, 9007199254740991.0, &size)) throw Napi::RangeError::New(env, "createEngine: size must be a non-negative integer");
  Napi::Value readOnly = o.Get("readOnly");
  if (!readOnly.IsBoolean()) throw Napi::TypeError::New(env, "createEngine: readOnly must be a boolean");
  out->fd = static_cast<int>(fd);
  out->kind = k;
  out->queueDepth = static_cast<uint32_t>(depth);
  out->sectorSize = static_cast<uint64_t>(sector);
  out->memoryAlignment = static_cast<uint64_t>(align);
  out->size = size;
  out->readOnly = readOnly.As<Napi::Boolean>().Value();
}

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

std::string At(size_t i) { return "request " + std::to_string(i) + ": "; }

class EngineWrap : public Napi::ObjectWrap<EngineWrap>, public CompletionSink, public OpenEngine {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {
                           InstanceMethod<&EngineWrap::Submit>("submit"),
                           InstanceMethod<&EngineWrap::Flush>("flush"),
                           InstanceMethod<&EngineWrap::Close>("close"),
                           InstanceAccessor<&EngineWrap::GetKind>("kind"),
                           InstanceAccessor<&EngineWrap::GetQueueDepth>("queueDepth"),
                           InstanceAccessor<&EngineWrap::GetInFlight>("inFlight"),
                       });
  }

  // Constructed by createEngine, which validates the options first; an
  // Engine made any other way has no engine behind it and acts closed.
  EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info), context_(info.Env(), "blockfork:io") {
    if (info.Length() != 1 || !info[0].IsObject()) return;
    EngineOptions o;
    ParseOptions(info.Env(), info[0].As<Napi::Object>(), &o);
    options_ = o;
  }

  ~EngineWrap() override {
    // Collected with requests in flight cannot happen (Track() holds a
    // reference); collected while open: stop the engine here. At teardown
    // the cleanup hook has stopped it already (instance.h).
    if (engine_) Stop();
  }

  // Returns 0, or -errno with *syscallName set.
  int Start(uv_loop_t* loop, int* err, const char** syscallName) {
    instance_ = GetInstance(Env());
    HandleCloses* closes = &instance_->closes;
    Engine* engine = options_.kind == "io_uring"
                         ? CreateUringEngine(loop, closes, options_.fd, options_.queueDepth, this, err, syscallName)
                         : CreateThreadEngine(loop, closes, options_.fd, options_.queueDepth, this, err, syscallName);
    if (engine == nullptr) return *err;
    engine_.reset(engine);
    instance_->engines.insert(this);
    return 0;
  }

  void Complete(Request* request) override {
    Batch* batch = request->batch;
    inFlight_--;
    if (--batch->remaining > 0) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Value argument;
    if (batch->isFlush) {
      argument = Napi::Number::New(env, batch->requests[0].result);
    } else {
      // A plain array, not a Float64Array: a typed array's memory is a
      // malloc and a backing store for the collector to track, per batch.
      Napi::Array results = Napi::Array::New(env, batch->requests.size());
      for (size_t i = 0; i < batch->requests.size(); i++) {
        results.Set(static_cast<uint32_t>(i), Napi::Number::New(env, batch->requests[i].result));
      }
      argument = results;
    }
    // Unpinned before the callback runs, so that it may release the slabs.
    std::unique_ptr<Batch> owned(batch);
    Napi::FunctionReference done = std::move(batch->done);
    owned.reset();
    try {
      done.MakeCallback(env.Global(), {argument}, context_);
    } catch (const Napi::Error& e) {
      // A throwing callback is the caller's bug: report it as uncaught, as
      // Node does for a throwing fs callback, and keep the engine going.
      napi_fatal_exception(env, e.Value());
    }
  }

  void Drained() override {
    if (inFlight_ == 0 && referenced_) {
      referenced_ = false;
      Unref();
    }
  }

  // The environment is going away: no callback can run any more.
  void Abandon() override {
    if (!engine_) return;
    for (Request* r : Stop()) {
      if (--r->batch->remaining == 0) delete r->batch;
    }
    inFlight_ = 0;
  }

 private:
  Napi::Value GetKind(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), engine_ ? engine_->Kind() : kind_);
  }
  Napi::Value GetQueueDepth(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), options_.queueDepth); }
  Napi::Value GetInFlight(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(inFlight_));
  }

  std::vector<Request*> Stop() {
    kind_ = engine_->Kind();
    std::vector<Request*> abandoned = engine_->Close();
    engine_.reset();
    instance_->engines.erase(this);
    return abandoned;
  }

  void CheckOpen(Napi::Env env) {
    if (!engine_) throw CodedError(env, "ERR_DEVICE_CLOSED", "the device is closed");
  }

  // Hands a parsed batch to the engine: { errno, syscall } if the engine
  // cannot take it (nothing is then queued or counted), else undefined.
  Napi::Value Queue(Napi::Env env, std::unique_ptr<Batch> batch, Napi::Function done) {
    const char* syscallName = "";
    int err = engine_->Ready(&syscallName);
    if (err != 0) return ErrnoResult(env, err, syscallName);
    batch->remaining = batch->requests.size();
    batch->done = Napi::Persistent(done);
    Batch* raw = batch.release();
    // A running engine must outlive its JS handle.
    if (!referenced_) {
      referenced_ = true;
      Ref();
    }
    inFlight_ += raw->requests.size();
    for (Request& r : raw->requests) r.batch = raw;
    engine_->Submit(raw->requests.data(), raw->requests.size());
    return env.Undefined();
  }

  // submit(requests, done) -> undefined | { errno, syscall }
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsFunction()) {
      throw Napi::TypeError::New(env, "submit: expected (requests: array, done: function)");
    }
    Napi::Function done = info[1].As<Napi::Function>();
    Napi::Array list = info[0].As<Napi::Array>();
    uint32_t count = list.Length();
    if (count == 0) throw Napi::RangeError::New(env, "submit: the batch holds no request");
    // Should parsing throw, the batch's destructor releases what it pinned.
    auto batch = std::make_unique<Batch>();
    batch->id = ++instance_->batches;
    // Grown as requests are read, never from the array's claimed length: a
    // sparse array may claim four billion.
    batch->requests.reserve(count < 1024 ? count : 1024);
    Napi::Object keyList = instance_->requestKeys.Value();
    RequestKeys keys{keyList.Get(0u), keyList.Get(1u), keyList.Get(2u), keyList.Get(3u)};
    for (uint32_t i = 0; i < count; i++) {
      batch->requests.emplace_back();
      Parse(env, keys, list.Get(i), i, &batch->requests.back(), batch.get());
      // The caller's JS (a getter) may have closed the engine meanwhile.
      CheckOpen(env);
    }
    return Queue(env, std::move(batch), done);
  }

  struct RequestKeys {
    Napi::Value op, dsync, offset, buffers;
  };

  void Parse(Napi::Env env, const RequestKeys& keys, Napi::Value value, uint32_t i, Request* r, Batch* batch) {
    if (!value.IsObject()) throw Napi::TypeError::New(env, At(i) + "must be an object");
    Napi::Object o = value.As<Napi::Object>();
    Napi::Value op = o.Get(keys.op);
    if (!op.IsNumber() || (op.As<Napi::Number>().DoubleValue() != 0 && op.As<Napi::Number>().DoubleValue() != 1)) {
      throw Napi::TypeError::New(env, At(i) + "op must be 0 (read) or 1 (write)");
    }
    r->op = op.As<Napi::Number>().DoubleValue() == 0 ? Op::Read : Op::Write;
    if (r->op == Op::Write && options_.readOnly) throw CodedError(env, "ERR_READ_ONLY", At(i) + "the device is open read-only");
    Napi::Value dsync = o.Get(keys.dsync);
    if (!dsync.IsUndefined() && !dsync.IsBoolean()) throw Napi::TypeError::New(env, At(i) + "dsync must be a boolean");
    r->dsync = dsync.IsBoolean() && dsync.As<Napi::Boolean>().Value();

    Napi::Value offsetValue = o.Get(keys.offset);
    if (!offsetValue.IsNumber()) throw Napi::TypeError::New(env, At(i) + "offset must be a number");
    double offset = offsetValue.As<Napi::Number>().DoubleValue();
    if (!(offset >= 0 && offset <= 9007199254740991.0) || offset != static_cast<double>(static_cast<uint64_t>(offset))) {
      throw Napi::RangeError::New(env, At(i) + "offset must be a non-negative integer");
    }
    r->offset = static_cast<uint64_t>(offset);
    if (r->offset % static_cast<uint64_t>(options_.sectorSize) != 0) {
      throw Napi::RangeError::New(env, At(i) + "offset " + std::to_string(r->offset) +
                                           " is not a multiple of the sector size " + std::to_string(options_.sectorSize));
    }

    Napi::Value buffersValue = o.Get(keys.buffers);
    if (!buffersValue.IsArray()) throw Napi::TypeError::New(env, At(i) + "buffers must be an array of Uint8Arrays");
    Napi::Array buffers = buffersValue.As<Napi::Array>();
    uint32_t n = buffers.Length();
    if (n == 0 || n > IOV_MAX) {
      throw Napi::RangeError::New(env, At(i) + "buffers must hold 1 to " + std::to_string(IOV_MAX) + " views, got " +
                                           std::to_string(n));
    }
    r->iov.resize(n);
    uint64_t total = 0;
    for (uint32_t j = 0; j < n; j++) {
      // Made only for an error: a request may hold hundreds of buffers.
      auto where = [&]() { return At(i) + "buffer " + std::to_string(j) + " "; };
      Napi::Value b = buffers.Get(j);
      // One call for the type, the view's address and length, and its memory.
      bool isTyped = false;
      napi_is_typedarray(env, b, &isTyped);
      napi_typedarray_type type = napi_int8_array;
      size_t length = 0;
      void* data = nullptr;
      napi_value memoryValue = nullptr;
      if (isTyped) napi_get_typedarray_info(env, b, &type, &length, &data, &memoryValue, nullptr);
      if (!isTyped || type != napi_uint8_array) throw Napi::TypeError::New(env, where() + "must be a Uint8Array or Buffer");
      bool detached = false;
      napi_is_detached_arraybuffer(env, memoryValue, &detached);
      if (detached) throw Napi::RangeError::New(env, where() + "has been released (its memory is gone)");
      void* base = nullptr;
      size_t memoryLength = 0;
      napi_get_arraybuffer_info(env, memoryValue, &base, &memoryLength);
      // Only slab memory: any other ArrayBuffer may be collected, detached
      // or transferred (its memory freed or moved) under the I/O.
      Slab* slab = FindSlab(env, base, memoryLength);
      if (slab == nullptr) {
        throw Napi::TypeError::New(env, where() + "is not slab memory (I/O buffers must be views of a Slab of this thread)");
      }
      PinSlab(slab);
      batch->pins.push_back(slab);
      if (FirstInBatch(slab, batch->id)) batch->memory.push_back(Napi::Persistent(Napi::ArrayBuffer(env, memoryValue)));
      // napi_get_typedarray_info's data is the view's first byte (the memory's base plus its offset).
      uint8_t* address = static_cast<uint8_t*>(data);
      if (length == 0 || length % static_cast<size_t>(options_.sectorSize) != 0) {
        throw Napi::RangeError::New(env, where() + "length " + std::to_string(length) +
                                             " is not a positive multiple of the sector size " +
                                             std::to_string(options_.sectorSize));
      }
      if (reinterpret_cast<uintptr_t>(address) % static_cast<uintptr_t>(options_.memoryAlignment) != 0) {
        throw Napi::RangeError::New(env, where() + "address is not aligned to " + std::to_string(options_.memoryAlignment) +
                                             " bytes (use slab memory)");
      }
      r->iov[j].iov_base = address;
      r->iov[j].iov_len = length;
      total += length;
    }
    if (static_cast<double>(r->offset + total) > options_.size) {
      throw Napi::RangeError::New(env, At(i) + "bytes " + std::to_string(r->offset) + ".." +
                                           std::to_string(r->offset + total) + " reach past the end of the device (" +
                                           std::to_string(static_cast<uint64_t>(options_.size)) + " bytes)");
    }
  }

  // flush(done) -> undefined | { errno, syscall }: fdatasync after
  // everything submitted before it.
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "flush: expected (done: function)");
    if (options_.readOnly) throw CodedError(env, "ERR_READ_ONLY", "flush: the device is open read-only");
    auto batch = std::make_unique<Batch>();
    batch->requests.resize(1);
    batch->requests[0].op = Op::Flush;
    batch->isFlush = true;
    return Queue(env, std::move(batch), info[0].As<Napi::Function>());
  }

  // close(): refuses while requests are in flight; harmless twice.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!engine_) return env.Undefined();
    if (inFlight_ > 0) {
      throw CodedError(env, "ERR_BUSY", "close: " + std::to_string(inFlight_) + " request(s) still in flight");
    }
    Stop();
    return env.Undefined();
  }

  std::unique_ptr<Engine> engine_;
  Instance* instance_ = nullptr;
  Napi::AsyncContext context_;
  EngineOptions options_;
  const char* kind_ = "";
  size_t inFlight_ = 0;
  bool referenced_ = false;
};


// createEngine(options) -> Engine | { errno, syscall }
Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "createEngine: expected an options object");
  EngineOptions checked;
  ParseOptions(env, info[0].As<Napi::Object>(), &checked);
  Napi::Object object = GetInstance(env)->engineConstructor.New({info[0]});
  EngineWrap* wrap = EngineWrap::Unwrap(object);
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "createEngine: no event loop");
  int err = 0;
  const char* syscallName = "";
  if (wrap->Start(loop, &err, &syscallName) != 0) return ErrnoResult(env, err, syscallName);
  return object;
}

Napi::Value ProbeIoUring(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ProbeUring()); }

}  // namespace

void InitEngine(Napi::Env env, Napi::Object exports) {
  GetInstance(env)->engineConstructor = Napi::Persistent(EngineWrap::Define(env));
  Napi::Array keys = Napi::Array::New(env, 4);
  keys.Set(0u, "op");
  keys.Set(1u, "dsync");
  keys.Set(2u, "offset");
  keys.Set(3u, "buffers");
  GetInstance(env)->requestKeys = Napi::Persistent(keys.As<Napi::Object>());
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine, "createEngine"));
  exports.Set("probeIoUring", Napi::Function::New(env, ProbeIoUring, "probeIoUring"));
}

}  // namespace blockfork
