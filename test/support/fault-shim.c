/*
 * Fault injection at the kernel boundary, for tests only: an LD_PRELOAD
 * library that makes chosen calls of the addon fail or wait, on command.
 * Each fault is on while a file of its name exists in $BLOCKFORK_FAULT_DIR:
 *
 *   pthread_create  pthread_create fails with EAGAIN (a pids cgroup's limit).
 *   enter-eagain    io_uring_enter that submits fails with EAGAIN.
 *   enter-short     io_uring_enter consumes at most one entry per call.
 *   hold-write      the first pwritev2 waits until the memory it writes from
 *                   is unmapped, or 2 s pass, then runs; held.log says which.
 *
 * Every pwritev2 or preadv that fails with EFAULT (memory not mapped) is
 * logged to efault.log. Everything else passes through to the real call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int fault_on(const char *name) {
  const char *dir = getenv("BLOCKFORK_FAULT_DIR");
  if (dir == NULL) return 0;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

static void log_line(const char *file, const char *line) {
  const char *dir = getenv("BLOCKFORK_FAULT_DIR");
  if (dir == NULL) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t ignored = write(fd, line, strlen(line));
  (void)ignored;
  close(fd);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg) {
  static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
  if (real == NULL) real = dlsym(RTLD_NEXT, "pthread_create");
  if (fault_on("pthread_create")) return EAGAIN;
  return real(thread, attr, start, arg);
}

long syscall(long number, ...) {
  static long (*real)(long, ...);
  if (real == NULL) real = dlsym(RTLD_NEXT, "syscall");
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (number == __NR_io_uring_enter && a[1] > 0) {
    if (fault_on("enter-eagain")) {
      errno = EAGAIN;
      return -1;
    }
    if (fault_on("enter-short")) a[1] = 1;
  }
  return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static int held_before;           /* a write has been held already */
static uintptr_t held_address;    /* what the held write writes from, while held */
static int released_by_unmap;

int munmap(void *address, size_t length) {
  static int (*real)(void *, size_t);
  if (real == NULL) real = dlsym(RTLD_NEXT, "munmap");
  int result = real(address, length);
  pthread_mutex_lock(&hold_lock);
  uintptr_t start = (uintptr_t)address;
  if (held_address != 0 && held_address >= start && held_address < start + length) {
    released_by_unmap = 1;
    pthread_cond_broadcast(&hold_cond);
  }
  pthread_mutex_unlock(&hold_lock);
  return result;
}

static void note_efault(const char *call, ssize_t result) {
  if (result < 0 && errno == EFAULT) {
    char line[64];
    snprintf(line, sizeof line, "%s EFAULT\n", call);
    log_line("efault.log", line);
  }
}

/* The addon is built with 64-bit file offsets: pwritev2 and preadv are
   called by these names. */
ssize_t pwritev64v2(int fd, const struct iovec *iov, int count, off_t offset, int flags) {
  static ssize_t (*real)(int, const struct iovec *, int, off_t, int);
  if (real == NULL) real = dlsym(RTLD_NEXT, "pwritev64v2");
  int hold = 0;
  if (count > 0 && fault_on("hold-write")) {
    pthread_mutex_lock(&hold_lock);
    if (!held_before) {
      held_before = hold = 1;
      held_address = (uintptr_t)iov[0].iov_base;
      log_line("held.log", "holding\n");
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += 2;
      while (!released_by_unmap && pthread_cond_timedwait(&hold_cond, &hold_lock, &until) == 0) {
      }
      held_address = 0;
    }
    pthread_mutex_unlock(&hold_lock);
  }
  ssize_t result = real(fd, iov, count, offset, flags);
  int saved = errno;
  if (hold) {
    char line[128];
    snprintf(line, sizeof line, "released by %s: result %zd errno %d\n", released_by_unmap ? "munmap" : "timeout", result,
             result < 0 ? saved : 0);
    log_line("held.log", line);
  }
  errno = saved;
  note_efault("pwritev2", result);
  errno = saved;
  return result;
}

ssize_t preadv64(int fd, const struct iovec *iov, int count, off_t offset) {
  static ssize_t (*real)(int, const struct iovec *, int, off_t);
  if (real == NULL) real = dlsym(RTLD_NEXT, "preadv64");
  ssize_t result = real(fd, iov, count, offset);
  int saved = errno;
  note_efault("preadv", result);
  errno = saved;
  return result;
}
