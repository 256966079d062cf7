/*
 * hostfile: the two host-file facts Node's fs module cannot give.
 *
 *   seekData(fd, offset)  -> lseek(fd, offset, SEEK_DATA), or -1 when no data follows (ENXIO)
 *   seekHole(fd, offset)  -> lseek(fd, offset, SEEK_HOLE)
 *
 * QEMU's file-posix driver answers block-status queries for raw files with exactly these
 * calls (holes read as zero and are reported `zero: true, data: false` by `qemu-img map`),
 * so the harness needs them to agree with qemu-img on raw backing files. N-API only, so a
 * binary built against one Node version loads in any later one.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <node_api.h>

static napi_value do_seek(napi_env env, napi_callback_info info, int whence) {
  size_t argc = 2;
  napi_value argv[2];
  napi_value result;
  int32_t fd;
  double offd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "expected (fd, offset)");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_double(env, argv[1], &offd) != napi_ok || offd < 0) {
    napi_throw_type_error(env, NULL, "expected (fd: number, offset: non-negative number)");
    return NULL;
  }
  off_t r = lseek(fd, (off_t)offd, whence);
  if (r < 0) {
    if (errno == ENXIO) {
      napi_create_double(env, -1, &result);
      return result;
    }
    /* EINVAL: the file system does not support SEEK_DATA/SEEK_HOLE; -2 tells the caller. */
    if (errno == EINVAL || errno == EOPNOTSUPP) {
      napi_create_double(env, -2, &result);
      return result;
    }
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_create_double(env, (double)r, &result);
  return result;
}

static napi_value seek_data(napi_env env, napi_callback_info info) { return do_seek(env, info, SEEK_DATA); }
static napi_value seek_hole(napi_env env, napi_callback_info info) { return do_seek(env, info, SEEK_HOLE); }

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"seekData", NULL, seek_data, NULL, NULL, NULL, napi_default, NULL},
    {"seekHole", NULL, seek_hole, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
