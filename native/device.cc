// open(path, flags) -> geometry or { errno, syscall }; close(fd) -> 0 | -errno;
// dataExtent(fd, offset) -> [start, end] of a regular file's first data at or
// after offset (lseek SEEK_DATA, then SEEK_HOLE), null, or { errno, syscall }.
//
// A regular file that does not exist is created without O_DIRECT, sized
// (sparse) with ftruncate, then reopened with the flags asked for: some file
// systems (tmpfs) create the file and only then refuse O_DIRECT, and a failed
// open must not leave a file behind.
#include "device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "errno_result.h"

namespace blockfork {
namespace {

struct Geometry {
  uint64_t size = 0;
  uint32_t logical = 0;
  uint32_t physical = 0;
  uint32_t memoryAlignment = 0;
  bool isBlockDevice = false;
};

// Returns 0 or -errno, with *syscall naming what failed.
int BlockDeviceGeometry(int fd, Geometry* g, const char** syscall) {
  *syscall = "ioctl";
  uint64_t bytes = 0;
  if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) return -errno;
  int logical = 0;
  if (ioctl(fd, BLKSSZGET, &logical) != 0) return -errno;
  unsigned int physical = 0;
  // Some virtual devices answer 0, or do not answer: the logical size stands in.
  if (ioctl(fd, BLKPBSZGET, &physical) != 0 || physical == 0) physical = static_cast<unsigned int>(logical);
  g->size = bytes;
  g->logical = static_cast<uint32_t>(logical);
  g->physical = physical;
  g->memoryAlignment = static_cast<uint32_t>(logical);
  g->isBlockDevice = true;
  return 0;
}

int FileGeometry(int fd, const struct stat& st, Geometry* g) {
  uint32_t offsetAlign = 0, memAlign = 0;
#ifdef STATX_DIOALIGN
  struct statx sx {};
  if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
      sx.stx_dio_offset_align != 0) {
    offsetAlign = sx.stx_dio_offset_align;
    memAlign = sx.stx_dio_mem_align;
  }
#endif
  // Without STATX_DIOALIGN the file system's block size is always safe.
  if (offsetAlign == 0) offsetAlign = static_cast<uint32_t>(st.st_blksize);
  if (memAlign == 0) memAlign = offsetAlign;
  g->logical = offsetAlign;
  g->physical = static_cast<uint32_t>(st.st_blksize) > offsetAlign ? static_cast<uint32_t>(st.st_blksize) : offsetAlign;
  g->memoryAlignment = memAlign;
  // A tail shorter than a sector cannot be reached by aligned I/O.
  g->size = static_cast<uint64_t>(st.st_size) / offsetAlign * offsetAlign;
  g->isBlockDevice = false;
  return 0;
}

// Only regular files and block devices hold volumes: EISDIR for a
// directory, ENOTBLK for anything else, 0 for what may be opened.
int NotAVolume(mode_t mode) {
  if (S_ISREG(mode) || S_ISBLK(mode)) return 0;
  return S_ISDIR(mode) ? EISDIR : ENOTBLK;
}

bool GetBool(Napi::Object flags, const char* name) {
  Napi::Value v = flags.Get(name);
  if (!v.IsBoolean()) throw Napi::TypeError::New(flags.Env(), std::string("open: flags.") + name + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, "open: expected (path: string, flags: object)");
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) {
    throw Napi::TypeError::New(env, "open: path must be a non-empty string without NUL bytes");
  }
  Napi::Object flags = info[1].As<Napi::Object>();
  bool readOnly = GetBool(flags, "readOnly");
  bool direct = GetBool(flags, "direct");
  bool create = GetBool(flags, "create");
  Napi::Value sizeValue = flags.Get("size");
  double size = sizeValue.IsNumber() ? sizeValue.As<Napi::Number>().DoubleValue() : -1;
  if (!(size >= 0 && size <= 9007199254740991.0) || size != static_cast<double>(static_cast<uint64_t>(size))) {
    throw Napi::RangeError::New(env, "open: flags.size must be a non-negative integer");
  }

  int accessFlags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  // O_NONBLOCK only so that a FIFO opened for reading cannot hang the JS
  // thread in open(); it is cleared once the path is known to be a volume.
  int openFlags = accessFlags | (direct ? O_DIRECT : 0) | O_NONBLOCK;
  bool created = false;
  int fd = open(path.c_str(), openFlags);
  if (fd < 0 && errno == ENOENT && create && size > 0) {
    int made = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (made < 0) return ErrnoResult(env, errno, "open");
    if (ftruncate(made, static_cast<off_t>(size)) != 0) {
      int err = errno;
      close(made);
      unlink(path.c_str());
      return ErrnoResult(env, err, "ftruncate");
    }
    close(made);
    created = true;
    fd = open(path.c_str(), openFlags);
    if (fd < 0) {
      int err = errno;
      unlink(path.c_str());
      return ErrnoResult(env, err, "open");
    }
  }
  if (fd < 0) {
    int err = errno;
    // O_DIRECT is refused (EINVAL) by directories and character devices as
    // by file systems: say what the path is rather than blame the file system.
    struct stat st;
    if (err == EINVAL && direct && stat(path.c_str(), &st) == 0 && NotAVolume(st.st_mode) != 0) {
      err = NotAVolume(st.st_mode);
    }
    return ErrnoResult(env, err, "open");
  }

  auto fail = [&](int err, const char* syscall) {
    close(fd);
    if (created) unlink(path.c_str());
    return ErrnoResult(env, err, syscall);
  };

  struct stat st;
  if (fstat(fd, &st) != 0) return fail(errno, "fstat");
  if (NotAVolume(st.st_mode) != 0) return fail(NotAVolume(st.st_mode), "open");
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) return fail(errno, "fcntl");

  // Two writers on one volume would corrupt it; readers may share.
  if (flock(fd, (readOnly ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) return fail(errno, "flock");

  Geometry g;
  if (S_ISBLK(st.st_mode)) {
    const char* syscall = "ioctl";
    int r = BlockDeviceGeometry(fd, &g, &syscall);
    if (r < 0) return fail(-r, syscall);
  } else {
    FileGeometry(fd, st, &g);
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd));
  result.Set("size", Napi::Number::New(env, static_cast<double>(g.size)));
  result.Set("logicalSectorSize", Napi::Number::New(env, g.logical));
  result.Set("physicalSectorSize", Napi::Number::New(env, g.physical));
  result.Set("memoryAlignment", Napi::Number::New(env, g.memoryAlignment));
  result.Set("isBlockDevice", Napi::Boolean::New(env, g.isBlockDevice));
  result.Set("created", Napi::Boolean::New(env, created));
  return result;
}

// Int32Value() would turn NaN into 0 and 1.5 into 1: a call on stdin or
// stdout for a bad argument. Only a whole number names a descriptor.
int DescriptorArgument(const Napi::CallbackInfo& info, const char* call) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, std::string(call) + ": expected a file descriptor");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int>(d))) {
    throw Napi::RangeError::New(env, std::string(call) + ": file descriptor must be a non-negative integer");
  }
  return static_cast<int>(d);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = DescriptorArgument(info, "close");
  // close() releases the flock with the last descriptor of the open file.
  if (close(fd) != 0 && errno != EINTR) return Napi::Number::New(env, -errno);
  return Napi::Number::New(env, 0);
}

// The first run of data at or after `offset`: [start, end); null where
// nothing but holes follows (ENXIO). A file system without SEEK_DATA reports
// the whole file as data. lseek moves the descriptor's file position, which
// no I/O here uses: every request names its offset.
Napi::Value DataExtent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = DescriptorArgument(info, "dataExtent");
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "dataExtent: expected (fd, offset)");
  double offset = info[1].As<Napi::Number>().DoubleValue();
  if (!(offset >= 0 && offset <= 9007199254740991.0) || offset != static_cast<double>(static_cast<uint64_t>(offset))) {
    throw Napi::RangeError::New(env, "dataExtent: offset must be a non-negative integer");
  }
  off_t start = lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
  if (start < 0) return errno == ENXIO ? env.Null() : ErrnoResult(env, errno, "lseek");
  off_t end = lseek(fd, start, SEEK_HOLE);
  if (end < 0) return ErrnoResult(env, errno, "lseek");
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, static_cast<double>(start)));
  result.Set(1u, Napi::Number::New(env, static_cast<double>(end)));
  return result;
}

}  // namespace

void InitDevice(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("dataExtent", Napi::Function::New(env, DataExtent, "dataExtent"));
}

}  // namespace blockfork
