// CRC32C (Castagnoli, reflected: the checksum of iSCSI, ext4 and the
// journal's records) over views of memory, at once or on libuv's pool.
//
//   crc32c(view, previous = 0) -> number     on the JS thread
//   crc32cTables(view, previous = 0)         the same by the tables alone (what a
//                                            CPU without the instruction runs)
//   crc32cBatch(views, done[, chunkBytes])   on a pool thread; done(Uint32Array):
//                                            one checksum per view, or with
//                                            chunkBytes one per chunk of that
//                                            many bytes of each view, in order
//   crc32cHardware: boolean                  the CPU's instruction is used
//
// Why here and not in JS: the journal takes one checksum per block it writes
// (a redirected stream, all of them), and the JS thread is the one a stream
// is bound by. The batch moves that work off it.
//
// How. With the CPU's CRC32C instruction (SSE4.2 on x86-64, the CRC
// extension on arm64, both found at load), three independent streams run
// side by side (the instruction's latency is three cycles, its throughput
// one per cycle) and are combined by shifting the first two over the others'
// bytes with precomputed tables (Mark Adler's method). Without it, the
// slicing-by-8 tables. Both give the same value for any length and
// alignment, and both continue from a previous checksum:
// crc32c(b, crc32c(a)) == crc32c(a ‖ b).
//
// A batch's views must lie in slabs of this environment: each is pinned
// until the job ends, so a slab cannot be released (releaseSlab refuses) or
// unmapped (its finalizer orphans it) under the pool thread, and one
// reference per slab keeps its ArrayBuffer reachable meanwhile. Views that
// are not slab memory (a Buffer on the V8 heap, which may move or be
// detached) are checksummed at once, before the call returns.
#include "crc32c.h"

#include <node_api.h>

#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#define BLOCKFORK_CRC_HARDWARE 1
#define BLOCKFORK_CRC_TARGET __attribute__((target("sse4.2,crc32")))
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#define BLOCKFORK_CRC_HARDWARE 1
#if defined(__clang__)
#define BLOCKFORK_CRC_TARGET __attribute__((target("crc")))
#else
#define BLOCKFORK_CRC_TARGET __attribute__((target("+crc")))
#endif
#else
#define BLOCKFORK_CRC_HARDWARE 0
#endif

#include "instance.h"
#include "slab.h"

namespace blockfork {

namespace {

constexpr uint32_t kPolynomial = 0x82f63b78;  // reflected Castagnoli

// Lengths of the three-stream chunks: powers of two (the shift tables below
// are built for them). A 4 KiB block takes five short chunks and a tail.
constexpr size_t kLong = 8192;
constexpr size_t kShort = 256;

struct Tables {
  uint32_t slicing[8][256];
  // crc -> crc shifted over kLong (kShort) zero bytes, one table per byte.
  uint32_t longShift[4][256];
  uint32_t shortShift[4][256];
  bool hardware;
};

// GF(2) 32x32 matrices over the CRC's state: the operator of n zero bits.
uint32_t MatrixTimes(const uint32_t* matrix, uint32_t vector) {
  uint32_t sum = 0;
  for (; vector != 0; vector >>= 1, matrix++) {
    if (vector & 1) sum ^= *matrix;
  }
  return sum;
}

void MatrixSquare(uint32_t* square, const uint32_t* matrix) {
  for (int n = 0; n < 32; n++) square[n] = MatrixTimes(matrix, matrix[n]);
}

// The operator that appends `bytes` zero bytes (a power of two) to a state.
void ZerosOperator(uint32_t* even, size_t bytes) {
  uint32_t odd[32];
  odd[0] = kPolynomial;  // one zero bit
  for (int n = 1; n < 32; n++) odd[n] = uint32_t{1} << (n - 1);
  MatrixSquare(even, odd);  // two bits
  MatrixSquare(odd, even);  // four bits
  // Each square doubles: eight bits (one byte) first, then on while bytes halves down to 1.
  for (;;) {
    MatrixSquare(even, odd);
    bytes >>= 1;
    if (bytes == 0) return;
    MatrixSquare(odd, even);
    bytes >>= 1;
    if (bytes == 0) {
      std::memcpy(even, odd, sizeof(odd));
      return;
    }
  }
}

void ShiftTable(uint32_t table[4][256], size_t bytes) {
  uint32_t op[32];
  ZerosOperator(op, bytes);
  for (uint32_t n = 0; n < 256; n++) {
    for (int k = 0; k < 4; k++) table[k][n] = MatrixTimes(op, n << (8 * k));
  }
}

bool CpuHasCrc() {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2) != 0;
#elif defined(__aarch64__)
  return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#else
  return false;
#endif
}

const Tables& GetTables() {
  // Built once per process (C++11 makes the first call thread-safe): read-only after.
  static const Tables* tables = [] {
    Tables* t = new Tables();
    for (uint32_t n = 0; n < 256; n++) {
      uint32_t crc = n;
      for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (kPolynomial & (0u - (crc & 1)));
      t->slicing[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
      uint32_t crc = t->slicing[0][n];
      for (int k = 1; k < 8; k++) {
        crc = t->slicing[0][crc & 0xff] ^ (crc >> 8);
        t->slicing[k][n] = crc;
      }
    }
    ShiftTable(t->longShift, kLong);
    ShiftTable(t->shortShift, kShort);
    t->hardware = CpuHasCrc();
    return t;
  }();
  return *tables;
}

inline uint32_t Shift(const uint32_t table[4][256], uint32_t crc) {
  return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}

// The state (not inverted) over `length` bytes, slicing-by-8.
uint32_t SoftwareState(const Tables& t, uint32_t state, const uint8_t* p, size_t length) {
  while (length > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    state = t.slicing[0][(state ^ *p++) & 0xff] ^ (state >> 8);
    length--;
  }
  for (; length >= 8; length -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);  // little-endian hosts only (x86-64, arm64 Linux)
    word ^= state;
    state = t.slicing[7][word & 0xff] ^ t.slicing[6][(word >> 8) & 0xff] ^ t.slicing[5][(word >> 16) & 0xff] ^
            t.slicing[4][(word >> 24) & 0xff] ^ t.slicing[3][(word >> 32) & 0xff] ^
            t.slicing[2][(word >> 40) & 0xff] ^ t.slicing[1][(word >> 48) & 0xff] ^ t.slicing[0][word >> 56];
  }
  while (length-- > 0) state = t.slicing[0][(state ^ *p++) & 0xff] ^ (state >> 8);
  return state;
}

#if BLOCKFORK_CRC_HARDWARE
BLOCKFORK_CRC_TARGET inline uint64_t Step8(uint64_t state, const uint8_t* p) {
  uint64_t word;
  std::memcpy(&word, p, 8);
#if defined(__x86_64__)
  return _mm_crc32_u64(state, word);
#elif defined(__clang__)
  return __builtin_arm_crc32cd(static_cast<uint32_t>(state), word);
#else
  return __builtin_aarch64_crc32cx(static_cast<uint32_t>(state), word);
#endif
}

BLOCKFORK_CRC_TARGET inline uint64_t Step1(uint64_t state, uint8_t byte) {
#if defined(__x86_64__)
  return _mm_crc32_u8(static_cast<uint32_t>(state), byte);
#elif defined(__clang__)
  return __builtin_arm_crc32cb(static_cast<uint32_t>(state), byte);
#else
  return __builtin_aarch64_crc32cb(static_cast<uint32_t>(state), byte);
#endif
}

// Three streams of `chunk` bytes each, side by side, while 3 * chunk remain.
BLOCKFORK_CRC_TARGET inline uint64_t ThreeStreams(const uint32_t shift[4][256], size_t chunk, uint64_t state,
                                                   const uint8_t*& p, size_t& length) {
  while (length >= 3 * chunk) {
    uint64_t second = 0, third = 0;
    const uint8_t* end = p + chunk;
    do {
      state = Step8(state, p);
      second = Step8(second, p + chunk);
      third = Step8(third, p + 2 * chunk);
      p += 8;
    } while (p < end);
    state = Shift(shift, static_cast<uint32_t>(state)) ^ static_cast<uint32_t>(second);
    state = Shift(shift, static_cast<uint32_t>(state)) ^ static_cast<uint32_t>(third);
    p += 2 * chunk;
    length -= 3 * chunk;
  }
  return state;
}

BLOCKFORK_CRC_TARGET uint32_t HardwareState(const Tables& t, uint32_t crc, const uint8_t* p, size_t length) {
  uint64_t state = crc;
  while (length > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    state = Step1(state, *p++);
    length--;
  }
  state = ThreeStreams(t.longShift, kLong, state, p, length);
  state = ThreeStreams(t.shortShift, kShort, state, p, length);
  for (; length >= 8; length -= 8, p += 8) state = Step8(state, p);
  while (length-- > 0) state = Step1(state, *p++);
  return static_cast<uint32_t>(state);
}
#endif

}  // namespace

uint32_t Crc32c(const uint8_t* data, size_t length, uint32_t previous) {
  const Tables& t = GetTables();
  uint32_t state = ~previous;
#if BLOCKFORK_CRC_HARDWARE
  if (t.hardware) return ~HardwareState(t, state, data, length);
#endif
  return ~SoftwareState(t, state, data, length);
}

uint32_t Crc32cSoftware(const uint8_t* data, size_t length, uint32_t previous) {
  return ~SoftwareState(GetTables(), ~previous, data, length);
}

namespace {

// napi calls below are raw C: a job may complete while its environment is
// being torn down (a Worker terminated), when calling into JS fails; that
// failure is dropped, never thrown.

bool ThrowIf(napi_env env, bool bad, bool typeError, const char* message) {
  if (!bad) return false;
  if (typeError) {
    napi_throw_type_error(env, nullptr, message);
  } else {
    napi_throw_range_error(env, nullptr, message);
  }
  return true;
}

// An optional integer argument from `min` to 2^32 - 1: *out is left as it is when `value` is
// undefined; false (with a TypeError or RangeError pending) when it is anything else but such a number.
bool ReadOptionalUint32(napi_env env, napi_value value, double min, const char* typeMessage, const char* rangeMessage,
                        uint32_t* out) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (type == napi_undefined) return true;
  if (ThrowIf(env, type != napi_number, true, typeMessage)) return false;
  double d = 0;
  napi_get_value_double(env, value, &d);
  if (ThrowIf(env, !(d >= min && d <= 4294967295.0 && d == static_cast<double>(static_cast<uint32_t>(d))), false, rangeMessage)) {
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

struct View {
  const uint8_t* data;
  size_t length;
};

// A Uint8Array's bytes; false (with an exception pending) if `value` is not one or its memory is gone.
bool ReadView(napi_env env, napi_value value, const char* what, View* view, napi_value* memory) {
  bool isTyped = false;
  napi_is_typedarray(env, value, &isTyped);
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  size_t offset = 0;
  if (isTyped) napi_get_typedarray_info(env, value, &type, &length, &data, memory, &offset);
  if (ThrowIf(env, !isTyped || type != napi_uint8_array, true, what)) return false;
  bool detached = false;
  napi_is_detached_arraybuffer(env, *memory, &detached);
  if (ThrowIf(env, detached, false, "crc32c: a view's memory has been released (its ArrayBuffer is detached)")) return false;
  view->data = static_cast<const uint8_t*>(data);
  view->length = length;
  return true;
}

napi_value Undefined(napi_env env) {
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

// crc32c(view, previous = 0), with the CPU's instruction or the tables (`tables`: the tables only).
napi_value Crc32cCall(napi_env env, napi_callback_info info, bool tables) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  // Arguments not passed are undefined (napi_get_cb_info fills argv up to its size).
  View view;
  napi_value memory;
  if (!ReadView(env, argv[0], "crc32c: data must be a Uint8Array or Buffer", &view, &memory)) return nullptr;
  uint32_t previous = 0;
  if (!ReadOptionalUint32(env, argv[1], 0, "crc32c: previous must be a number",
                          "crc32c: previous must be an integer from 0 to 2^32 - 1", &previous)) {
    return nullptr;
  }
  napi_value result;
  napi_create_uint32(env, tables ? Crc32cSoftware(view.data, view.length, previous) : Crc32c(view.data, view.length, previous),
                     &result);
  return result;
}

napi_value Crc32cSync(napi_env env, napi_callback_info info) { return Crc32cCall(env, info, false); }
napi_value Crc32cTables(napi_env env, napi_callback_info info) { return Crc32cCall(env, info, true); }

struct Job {
  napi_env env = nullptr;
  napi_async_work work = nullptr;
  napi_ref done = nullptr;
  std::vector<View> views;
  // Index in the batch of each view left to the pool thread.
  std::vector<uint32_t> deferred;
  // Bytes per checksum (0: a view's whole length), and each view's first checksum in `results`.
  size_t chunk = 0;
  std::vector<size_t> first;
  std::vector<uint32_t> results;

  // The checksums of view i, into results from first[i].
  void Checksum(uint32_t i) {
    const View& view = views[i];
    if (chunk == 0) {
      results[first[i]] = Crc32c(view.data, view.length, 0);
      return;
    }
    for (size_t at = 0, k = first[i]; at < view.length; at += chunk, k++) results[k] = Crc32c(view.data + at, chunk, 0);
  }
  std::vector<Slab*> pins;
  std::vector<napi_ref> memory;

  ~Job() {
    for (Slab* slab : pins) UnpinSlab(slab);
    for (napi_ref ref : memory) napi_delete_reference(env, ref);
    if (done != nullptr) napi_delete_reference(env, done);
    if (work != nullptr) napi_delete_async_work(env, work);
  }
};

void ExecuteJob(napi_env /*env*/, void* data) {
  Job* job = static_cast<Job*>(data);
  for (uint32_t i : job->deferred) job->Checksum(i);
}

void CompleteJob(napi_env env, napi_status status, void* data) {
  std::unique_ptr<Job> job(static_cast<Job*>(data));
  napi_value done = nullptr;
  if (job->done != nullptr) napi_get_reference_value(env, job->done, &done);
  size_t count = job->results.size();
  // Unpinned and unreferenced before the callback runs, so that it may release the slabs.
  std::vector<uint32_t> results = std::move(job->results);
  job.reset();
  if (status != napi_ok || done == nullptr) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value buffer, array, global, ignored;
  void* bytes = nullptr;
  if (napi_create_arraybuffer(env, count * 4, &bytes, &buffer) == napi_ok &&
      napi_create_typedarray(env, napi_uint32_array, count, buffer, 0, &array) == napi_ok &&
      napi_get_global(env, &global) == napi_ok) {
    if (count > 0) std::memcpy(bytes, results.data(), count * 4);
    // A throwing callback is the caller's bug: reported as uncaught, as Node does for an fs callback.
    if (napi_call_function(env, global, done, 1, &array, &ignored) == napi_pending_exception) {
      napi_value exception;
      if (napi_get_and_clear_last_exception(env, &exception) == napi_ok) napi_fatal_exception(env, exception);
    }
  }
  napi_close_handle_scope(env, scope);
}

// crc32cBatch(views, done[, chunkBytes])
napi_value Crc32cBatch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  bool isArray = false;
  if (argc >= 1) napi_is_array(env, argv[0], &isArray);
  if (ThrowIf(env, !isArray, true, "crc32cBatch: views must be an array of Uint8Arrays")) return nullptr;
  napi_valuetype doneType = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &doneType);
  if (ThrowIf(env, doneType != napi_function, true, "crc32cBatch: done must be a function")) return nullptr;
  uint32_t chunk = 0;  // 0: undefined, one checksum per view
  if (!ReadOptionalUint32(env, argv[2], 1, "crc32cBatch: chunkBytes must be a number",
                          "crc32cBatch: chunkBytes must be an integer from 1 to 2^32 - 1", &chunk)) {
    return nullptr;
  }
  uint32_t count = 0;
  napi_get_array_length(env, argv[0], &count);

  auto job = std::make_unique<Job>();
  job->env = env;
  job->chunk = chunk;
  job->views.resize(count);
  job->first.resize(count);
  size_t checksums = 0;
  // Every view is checked before anything is pinned: a bad batch leaves nothing behind. Views of
  // one ArrayBuffer come in runs (a slab's pages): a view whose buffer starts where the last
  // one's did lies in the same, live buffer, which is looked up once.
  struct Memory {
    napi_value buffer;
    Slab* slab;
  };
  std::vector<Memory> memories;
  std::vector<uint32_t> memoryOf(count);
  const uint8_t* lastBase = nullptr;
  for (uint32_t i = 0; i < count; i++) {
    napi_value element, buffer;
    napi_get_element(env, argv[0], i, &element);
    bool isTyped = false;
    napi_is_typedarray(env, element, &isTyped);
    napi_typedarray_type type = napi_int8_array;
    size_t length = 0, offset = 0;
    void* data = nullptr;
    if (isTyped) napi_get_typedarray_info(env, element, &type, &length, &data, &buffer, &offset);
    if (ThrowIf(env, !isTyped || type != napi_uint8_array, true, "crc32cBatch: every view must be a Uint8Array or Buffer")) {
      return nullptr;
    }
    if (ThrowIf(env, chunk != 0 && length % chunk != 0, false, "crc32cBatch: a view's length is not a multiple of chunkBytes")) {
      return nullptr;
    }
    job->views[i] = View{static_cast<const uint8_t*>(data), length};
    job->first[i] = checksums;
    checksums += chunk == 0 ? 1 : length / chunk;
    const uint8_t* base = static_cast<const uint8_t*>(data) - offset;
    if (base == lastBase && data != nullptr) {
      memoryOf[i] = static_cast<uint32_t>(memories.size() - 1);
      continue;
    }
    bool detached = false;
    napi_is_detached_arraybuffer(env, buffer, &detached);
    if (ThrowIf(env, detached, false, "crc32cBatch: a view's memory has been released (its ArrayBuffer is detached)")) {
      return nullptr;
    }
    void* bufferData = nullptr;
    size_t bufferLength = 0;
    napi_get_arraybuffer_info(env, buffer, &bufferData, &bufferLength);
    memories.push_back(Memory{buffer, FindSlab(env, bufferData, bufferLength)});
    memoryOf[i] = static_cast<uint32_t>(memories.size() - 1);
    lastBase = static_cast<const uint8_t*>(bufferData);
  }
  job->results.assign(checksums, 0);
  uint64_t batch = ++GetInstance(env)->batches;
  for (uint32_t i = 0; i < count; i++) {
    const Memory& memory = memories[memoryOf[i]];
    if (memory.slab == nullptr) {
      job->Checksum(i);
      continue;
    }
    PinSlab(memory.slab);
    job->pins.push_back(memory.slab);
    if (FirstInBatch(memory.slab, batch)) {
      napi_ref ref;
      napi_create_reference(env, memory.buffer, 1, &ref);
      job->memory.push_back(ref);
    }
    job->deferred.push_back(i);
  }
  napi_create_reference(env, argv[1], 1, &job->done);
  napi_value name;
  napi_create_string_utf8(env, "blockfork.crc32cBatch", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, nullptr, name, ExecuteJob, CompleteJob, job.get(), &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    napi_throw_error(env, nullptr, "crc32cBatch: could not queue the job on the thread pool");
    return nullptr;
  }
  job.release();  // CompleteJob owns it now
  return Undefined(env);
}

}  // namespace

void InitCrc32c(Napi::Env env, Napi::Object exports) {
  napi_value sync, tables, batch, hardware;
  napi_create_function(env, "crc32c", NAPI_AUTO_LENGTH, Crc32cSync, nullptr, &sync);
  napi_create_function(env, "crc32cTables", NAPI_AUTO_LENGTH, Crc32cTables, nullptr, &tables);
  napi_create_function(env, "crc32cBatch", NAPI_AUTO_LENGTH, Crc32cBatch, nullptr, &batch);
  napi_get_boolean(env, GetTables().hardware, &hardware);
  exports.Set("crc32c", Napi::Value(env, sync));
  exports.Set("crc32cTables", Napi::Value(env, tables));
  exports.Set("crc32cBatch", Napi::Value(env, batch));
  exports.Set("crc32cHardware", Napi::Value(env, hardware));
}

}  // namespace blockfork
