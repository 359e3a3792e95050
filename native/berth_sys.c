// berth_sys: the few Linux system calls the driver makes often enough that a
// process per call (fallocate(1), losetup(8), mount(8), umount(8)) was most
// of their cost. Each call runs on libuv's thread pool and returns a
// promise; a failure rejects with an Error whose message is the errno's
// text, `code` its name (EBUSY...) and `syscall` the call that failed. No
// argument is ever in it: mount data may hold credentials.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

enum op { OP_FALLOCATE, OP_LOOP_ATTACH, OP_LOOP_DETACH, OP_LOOP_SET_CAPACITY, OP_MOUNT, OP_UMOUNT };

struct call {
  enum op op;
  napi_async_work work;
  napi_deferred deferred;
  // arguments
  char *path;   // the file, device or target the call is about
  char *source; // mount: source
  char *fstype; // mount: filesystem type (NULL for a bind or remount)
  char *data;   // mount: filesystem options (never shown)
  int64_t a, b, c; // fallocate: fd, mode, offset; loop attach: read-only; mount/umount: flags
  int64_t length;  // fallocate: length
  // result
  int err;      // errno, 0 on success
  int64_t value; // loop attach: the device number
  const char *what; // the system call that failed
};

static void fail(struct call *c, const char *what) {
  c->err = errno;
  c->what = what;
}

/* A free loop device, configured in one ioctl (LOOP_CONFIGURE, Linux 5.8):
 * 512-byte sectors, direct I/O, read-only when asked. Another process may
 * take the device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE (EBUSY): ask
 * for another. */
static void loop_attach(struct call *c) {
  int backing = open(c->path, (c->a ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (backing < 0) return fail(c, "open");
  int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (control < 0) {
    fail(c, "open /dev/loop-control");
    close(backing);
    return;
  }
  for (int attempt = 0; attempt < 64; attempt++) {
    int n = ioctl(control, LOOP_CTL_GET_FREE);
    if (n < 0) {
      fail(c, "LOOP_CTL_GET_FREE");
      break;
    }
    char device[32];
    snprintf(device, sizeof device, "/dev/loop%d", n);
    int fd = open(device, (c->a ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENXIO) continue; // node not there yet, or gone
      fail(c, "open loop device");
      break;
    }
    struct loop_config config;
    memset(&config, 0, sizeof config);
    config.fd = (uint32_t)backing;
    config.block_size = 512;
    config.info.lo_flags = LO_FLAGS_DIRECT_IO | (c->a ? LO_FLAGS_READ_ONLY : 0);
    strncpy((char *)config.info.lo_file_name, c->path, LO_NAME_SIZE - 1);
    int rc = ioctl(fd, LOOP_CONFIGURE, &config);
    int saved = errno;
    close(fd);
    if (rc == 0) {
      c->value = n;
      c->err = 0;
      break;
    }
    errno = saved;
    if (saved == EBUSY) continue;
    fail(c, "LOOP_CONFIGURE");
    break;
  }
  if (c->value < 0 && c->err == 0) {
    errno = EBUSY;
    fail(c, "LOOP_CONFIGURE");
  }
  close(control);
  close(backing);
}

static void loop_ioctl(struct call *c, unsigned long request, const char *what) {
  int fd = open(c->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(c, "open");
  if (ioctl(fd, request, 0) < 0) fail(c, what);
  close(fd);
}

static void execute(napi_env env, void *data) {
  (void)env;
  struct call *c = data;
  c->err = 0;
  switch (c->op) {
  case OP_FALLOCATE:
    if (fallocate((int)c->a, (int)c->b, (off_t)c->c, (off_t)c->length) < 0) fail(c, "fallocate");
    break;
  case OP_LOOP_ATTACH:
    c->value = -1;
    loop_attach(c);
    break;
  case OP_LOOP_DETACH:
    loop_ioctl(c, LOOP_CLR_FD, "LOOP_CLR_FD");
    break;
  case OP_LOOP_SET_CAPACITY:
    loop_ioctl(c, LOOP_SET_CAPACITY, "LOOP_SET_CAPACITY");
    break;
  case OP_MOUNT:
    if (mount(c->source, c->path, c->fstype, (unsigned long)c->a, c->data) < 0) fail(c, "mount");
    break;
  case OP_UMOUNT:
    if (umount2(c->path, (int)c->a) < 0) fail(c, "umount2");
    break;
  }
}

static const char *errno_name(int err) {
  switch (err) {
#define E(x) case x: return #x
    E(EPERM); E(ENOENT); E(EIO); E(ENXIO); E(EBADF); E(EAGAIN); E(ENOMEM); E(EACCES); E(EFAULT);
    E(ENOTBLK); E(EBUSY); E(EEXIST); E(ENODEV); E(ENOTDIR); E(EISDIR); E(EINVAL); E(ENFILE);
    E(EMFILE); E(ENOTTY); E(EFBIG); E(ENOSPC); E(ESPIPE); E(EROFS); E(ENAMETOOLONG); E(ENOSYS);
    E(ELOOP); E(EOPNOTSUPP); E(ESTALE); E(EDQUOT); E(EINTR);
#undef E
  default: return "EUNKNOWN";
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  struct call *c = data;
  if (status == napi_ok && c->err == 0) {
    napi_value result;
    if (c->op == OP_LOOP_ATTACH) {
      char device[32];
      snprintf(device, sizeof device, "/dev/loop%lld", (long long)c->value);
      napi_create_string_utf8(env, device, NAPI_AUTO_LENGTH, &result);
    } else {
      napi_get_undefined(env, &result);
    }
    napi_resolve_deferred(env, c->deferred, result);
  } else {
    napi_value msg, code, error, syscall;
    napi_create_string_utf8(env, strerror(c->err), NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, errno_name(c->err), NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &error);
    napi_value errnoValue;
    napi_create_int32(env, -c->err, &errnoValue);
    napi_set_named_property(env, error, "errno", errnoValue);
    napi_create_string_utf8(env, c->what ? c->what : "", NAPI_AUTO_LENGTH, &syscall);
    napi_set_named_property(env, error, "syscall", syscall);
    napi_reject_deferred(env, c->deferred, error);
  }
  napi_delete_async_work(env, c->work);
  free(c->path);
  free(c->source);
  free(c->fstype);
  if (c->data) {
    memset(c->data, 0, strlen(c->data)); // mount options may hold credentials
    free(c->data);
  }
  free(c);
}

/* A string argument, or NULL for null/undefined. Returns 0 when the argument is neither a string nor absent. */
static int string_arg(napi_env env, napi_value v, char **out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  *out = NULL;
  if (t == napi_null || t == napi_undefined) return 1;
  if (t != napi_string) return 0;
  size_t len;
  napi_get_value_string_utf8(env, v, NULL, 0, &len);
  *out = malloc(len + 1);
  napi_get_value_string_utf8(env, v, *out, len + 1, &len);
  return strlen(*out) == len; // no NUL inside
}

static int number_arg(napi_env env, napi_value v, int64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_boolean) {
    bool b;
    napi_get_value_bool(env, v, &b);
    *out = b;
    return 1;
  }
  if (t != napi_number) return 0;
  return napi_get_value_int64(env, v, out) == napi_ok;
}

/* Parses the arguments by a signature ('s' string, 'S' string or null, 'n' number) into the call's fields in order. */
static napi_value start(napi_env env, napi_callback_info info, enum op op, const char *signature) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct call *c = calloc(1, sizeof *c);
  c->op = op;
  char **strings[] = {&c->path, &c->source, &c->fstype, &c->data};
  int64_t *numbers[] = {&c->a, &c->b, &c->c, &c->length};
  size_t ns = 0, nn = 0;
  int ok = strlen(signature) == argc;
  for (size_t i = 0; ok && signature[i]; i++) {
    if (signature[i] == 'n') ok = number_arg(env, argv[i], numbers[nn++]);
    else {
      ok = string_arg(env, argv[i], strings[ns++]) && (signature[i] == 'S' || *strings[ns - 1] != NULL);
    }
  }
  if (!ok) {
    free(c->path), free(c->source), free(c->fstype), free(c->data), free(c);
    napi_throw_type_error(env, "EINVAL", "berth_sys: wrong arguments");
    return NULL;
  }
  napi_value promise, name;
  napi_create_promise(env, &c->deferred, &promise);
  napi_create_string_utf8(env, "berth_sys", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, c, &c->work);
  napi_queue_async_work(env, c->work);
  return promise;
}

// The path slot comes first in `strings`, so each signature lists the path first.
static napi_value js_fallocate(napi_env env, napi_callback_info info) { return start(env, info, OP_FALLOCATE, "nnnn"); }
static napi_value js_loop_attach(napi_env env, napi_callback_info info) { return start(env, info, OP_LOOP_ATTACH, "sn"); }
static napi_value js_loop_detach(napi_env env, napi_callback_info info) { return start(env, info, OP_LOOP_DETACH, "s"); }
static napi_value js_loop_set_capacity(napi_env env, napi_callback_info info) {
  return start(env, info, OP_LOOP_SET_CAPACITY, "s");
}
static napi_value js_mount(napi_env env, napi_callback_info info) { return start(env, info, OP_MOUNT, "sSSSn"); }
static napi_value js_umount(napi_env env, napi_callback_info info) { return start(env, info, OP_UMOUNT, "sn"); }

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"fallocate", NULL, js_fallocate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"loopAttach", NULL, js_loop_attach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"loopDetach", NULL, js_loop_detach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"loopSetCapacity", NULL, js_loop_set_capacity, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount", NULL, js_umount, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
