#include "slab.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "instance.h"

namespace blockfork {

struct Slab {
  enum class State { Live, Released, Orphaned };
  napi_env env;
  void* memory;
  size_t length;
  int pins;  // buffers of I/O requests or checksum jobs in flight that use this memory
  State state;
  uint64_t batch;  // the last batch that took a reference to it
  // The registry it is listed in; shared, as the finalizer may come after
  // the environment's instance data is gone.
  std::shared_ptr<SlabRegistry> registry;
};

namespace {

void Forget(Slab* slab) {
  auto it = slab->registry->find(reinterpret_cast<uintptr_t>(slab->memory));
  if (it != slab->registry->end() && it->second == slab) slab->registry->erase(it);
}

void Unmap(Slab* slab) {
  munmap(slab->memory, slab->length);
  int64_t ignored;
  napi_adjust_external_memory(slab->env, -static_cast<int64_t>(slab->length), &ignored);
}

void FinalizeSlab(napi_env /*env*/, void* /*data*/, void* hint) {
  Slab* slab = static_cast<Slab*>(hint);
  if (slab->state == Slab::State::Released) {
    delete slab;
    return;
  }
  Forget(slab);
  if (slab->pins > 0) {
    // Requests still read or write this memory: the last unpin unmaps it.
    slab->state = Slab::State::Orphaned;
    return;
  }
  Unmap(slab);
  delete slab;
}

size_t SystemPageSize() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

bool IsWholeNumber(const Napi::Value& value, double min, double max, double* out) {
  if (!value.IsNumber()) return false;
  double d = value.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d))) return false;
  *out = d;
  return true;
}

constexpr size_t kHugePage = size_t{2} << 20;

// Anonymous memory for a slab. A slab of whole 2 MiB units is placed on a
// 2 MiB boundary (map 2 MiB more, unmap the slack on both sides) and marked
// MADV_HUGEPAGE: where transparent huge pages are enabled (even "madvise"
// only), it is backed by huge pages, so that the first touch of its memory
// costs one fault per 2 MiB instead of one per 4 KiB (on a virtual machine,
// several microseconds each), and O_DIRECT pins fewer pages. The hint may be
// refused (THP off, an old kernel): ordinary pages then, nothing else changes.
void* MapSlab(size_t bytes) {
  const int prot = PROT_READ | PROT_WRITE;
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (bytes % kHugePage != 0) return mmap(nullptr, bytes, prot, flags, -1, 0);
  void* raw = mmap(nullptr, bytes + kHugePage, prot, flags, -1, 0);
  if (raw == MAP_FAILED) return raw;
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + bytes + kHugePage;
  if (end > aligned + bytes) munmap(reinterpret_cast<void*>(aligned + bytes), end - (aligned + bytes));
  void* memory = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  madvise(memory, bytes, MADV_HUGEPAGE);
#endif
  return memory;
}

// allocSlab(byteLength): a multiple of the system page size, up to 1 TiB.
Napi::Value AllocSlab(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double length;
  if (info.Length() < 1 || !IsWholeNumber(info[0], 1, 1099511627776.0, &length) ||
      static_cast<size_t>(length) % SystemPageSize() != 0) {
    throw Napi::RangeError::New(env, "allocSlab: byteLength must be a positive multiple of the page size (" +
                                         std::to_string(SystemPageSize()) + ")");
  }
  size_t bytes = static_cast<size_t>(length);
  void* memory = MapSlab(bytes);
  if (memory == MAP_FAILED) {
    throw Napi::Error::New(env, std::string("allocSlab: mmap of ") + std::to_string(bytes) +
                                    " bytes failed: " + std::strerror(errno));
  }
  Slab* slab = new Slab{env, memory, bytes, 0, Slab::State::Live, 0, GetInstance(env)->slabs};
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(env, memory, bytes, FinalizeSlab, slab, &buffer);
  if (status != napi_ok) {
    munmap(memory, bytes);
    delete slab;
    if (status == napi_no_external_buffers_allowed) {
      throw Napi::Error::New(env,
                             "this runtime refuses external buffers (napi_no_external_buffers_allowed, as "
                             "Electron's sandbox does): blockfork needs page-aligned memory outside the V8 heap "
                             "for O_DIRECT and cannot run here");
    }
    throw Napi::Error::New(env, "allocSlab: napi_create_external_arraybuffer failed");
  }
  (*slab->registry)[reinterpret_cast<uintptr_t>(memory)] = slab;
  int64_t ignored;
  napi_adjust_external_memory(env, static_cast<int64_t>(bytes), &ignored);
  return Napi::Value(env, buffer);
}

// releaseSlab(arrayBuffer): frees now. Unmap first, then detach: if V8 runs
// the finalizer during the detach, it sees `released` and only frees the
// bookkeeping.
Napi::Value ReleaseSlab(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    throw Napi::TypeError::New(env, "releaseSlab: expected the slab's ArrayBuffer");
  }
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  if (buffer.IsDetached()) return env.Undefined();
  Slab* slab = FindSlab(env, buffer.Data(), buffer.ByteLength());
  if (slab == nullptr) {
    throw Napi::TypeError::New(env, "releaseSlab: this ArrayBuffer is not a slab of this thread");
  }
  if (slab->pins > 0) {
    throw Napi::Error::New(env, "releaseSlab: the slab is in use by " + std::to_string(slab->pins) +
                                    " buffer(s) of I/O requests or checksum jobs in flight");
  }
  Forget(slab);
  Unmap(slab);
  slab->state = Slab::State::Released;
  buffer.Detach();
  return env.Undefined();
}

// copy(target, source): memcpy between two views of equal length.
Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray()) {
    throw Napi::TypeError::New(env, "copy: target and source must be Uint8Arrays or Buffers");
  }
  Napi::TypedArray target = info[0].As<Napi::TypedArray>();
  Napi::TypedArray source = info[1].As<Napi::TypedArray>();
  if (target.TypedArrayType() != napi_uint8_array || source.TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(env, "copy: target and source must be Uint8Arrays or Buffers");
  }
  if (target.ByteLength() != source.ByteLength()) {
    throw Napi::RangeError::New(env, "copy: target (" + std::to_string(target.ByteLength()) +
                                         " bytes) and source (" + std::to_string(source.ByteLength()) +
                                         " bytes) differ in length");
  }
  uint8_t* to = static_cast<uint8_t*>(target.ArrayBuffer().Data()) + target.ByteOffset();
  const uint8_t* from = static_cast<const uint8_t*>(source.ArrayBuffer().Data()) + source.ByteOffset();
  if (target.ByteLength() > 0) std::memmove(to, from, target.ByteLength());
  return env.Undefined();
}

}  // namespace

Slab* FindSlab(napi_env env, const void* data, size_t byteLength) {
  SlabRegistry& registry = *GetInstance(env)->slabs;
  auto it = registry.find(reinterpret_cast<uintptr_t>(data));
  if (it == registry.end() || it->second->length != byteLength) return nullptr;
  return it->second;
}

void PinSlab(Slab* slab) { slab->pins++; }

void UnpinSlab(Slab* slab) {
  if (--slab->pins > 0 || slab->state != Slab::State::Orphaned) return;
  Unmap(slab);
  delete slab;
}

bool FirstInBatch(Slab* slab, uint64_t batch) {
  if (slab->batch == batch) return false;
  slab->batch = batch;
  return true;
}

void InitSlab(Napi::Env env, Napi::Object exports) {
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(SystemPageSize())));
  exports.Set("allocSlab", Napi::Function::New(env, AllocSlab, "allocSlab"));
  exports.Set("releaseSlab", Napi::Function::New(env, ReleaseSlab, "releaseSlab"));
  exports.Set("copy", Napi::Function::New(env, Copy, "copy"));
}

}  // namespace blockfork
