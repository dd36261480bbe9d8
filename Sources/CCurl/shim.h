#ifndef MANIFOLD_CCURL_SHIM_H
#define MANIFOLD_CCURL_SHIM_H

// Typed wrappers around libcurl's variadic setopt/getinfo functions, which Swift cannot call,
// and the macro constants that do not import (they are expressions, not literals).

#include <curl/curl.h>

static inline CURLcode manifold_curl_global_init(void) { return curl_global_init(CURL_GLOBAL_ALL); }

static inline CURLcode manifold_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode manifold_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode manifold_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode manifold_curl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode manifold_curl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}
/// Sets a blob option (e.g. CURLOPT_CAINFO_BLOB); libcurl copies the bytes.
static inline CURLcode manifold_curl_easy_setopt_blob(CURL *handle, CURLoption option, const void *data, size_t length) {
    struct curl_blob blob;
    blob.data = (void *)data;
    blob.len = length;
    blob.flags = CURL_BLOB_COPY;
    return curl_easy_setopt(handle, option, &blob);
}
static inline CURLcode manifold_curl_easy_setopt_write_callback(CURL *handle, CURLoption option, curl_write_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode manifold_curl_easy_setopt_header_callback(CURL *handle, curl_write_callback value) {
    return curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, value);
}
static inline CURLcode manifold_curl_easy_setopt_read_callback(CURL *handle, curl_read_callback value) {
    return curl_easy_setopt(handle, CURLOPT_READFUNCTION, value);
}
static inline CURLcode manifold_curl_easy_setopt_seek_callback(CURL *handle, curl_seek_callback value) {
    return curl_easy_setopt(handle, CURLOPT_SEEKFUNCTION, value);
}
static inline CURLcode manifold_curl_easy_setopt_xferinfo_callback(CURL *handle, curl_xferinfo_callback value) {
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, value);
}

static inline CURLcode manifold_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode manifold_curl_easy_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode manifold_curl_easy_getinfo_off_t(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLMcode manifold_curl_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
/// memfd_create(2) with MFD_CLOEXEC, through syscall(2): glibc declares the function only with _GNU_SOURCE.
static inline int manifold_memfd_create(const char *name) { return (int)syscall(SYS_memfd_create, name, 1u); }
#endif

static inline size_t manifold_curl_writefunc_pause(void) { return CURL_WRITEFUNC_PAUSE; }
static inline size_t manifold_curl_readfunc_abort(void) { return CURL_READFUNC_ABORT; }
static inline int manifold_curlpause_cont(void) { return CURLPAUSE_CONT; }
static inline int manifold_curl_error_size(void) { return CURL_ERROR_SIZE; }

#endif
