/*
 * A stand-in for libcupti, for GPU-less tests of strand-inject's CUDA-facing
 * code. It implements the few CUPTI entry points the library calls, records
 * the calls in a log, and lets the test hand it a buffer of activity records
 * (built with the real record layouts) to deliver through the registered
 * buffer callbacks, as CUPTI would.
 *
 * Written for strand; it declares its own prototypes (no NVIDIA headers).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*request_fn)(uint8_t **, size_t *, size_t *);
typedef void (*complete_fn)(void *, uint32_t, uint8_t *, size_t, size_t);
typedef uint64_t (*timestamp_fn)(void);

static request_fn g_request;
static complete_fn g_complete;
static timestamp_fn g_timestamp;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_log[8192];
static const size_t *g_offsets;
static size_t g_count;
static size_t g_dropped;

static void note(const char *fmt, unsigned a) {
    char item[64];
    snprintf(item, sizeof item, fmt, a);
    pthread_mutex_lock(&g_lock);
    size_t used = strlen(g_log);
    if (used + strlen(item) + 2 < sizeof g_log) {
        strcat(g_log, item);
        strcat(g_log, " ");
    }
    pthread_mutex_unlock(&g_lock);
}

int cuptiGetVersion(uint32_t *version) {
    const char *v = getenv("FAKE_CUPTI_VERSION");
    *version = v ? (uint32_t)strtoul(v, NULL, 10) : 24;
    note("version", 0);
    return 0;
}

int cuptiActivityRegisterTimestampCallback(timestamp_fn f) {
    g_timestamp = f;
    note("timestamp", 0);
    return 0;
}

int cuptiActivityRegisterCallbacks(request_fn r, complete_fn c) {
    g_request = r;
    g_complete = c;
    note("callbacks", 0);
    return 0;
}

int cuptiActivityEnable(uint32_t kind) {
    const char *fail = getenv("FAKE_CUPTI_FAIL_ENABLE");
    if (fail && (uint32_t)strtoul(fail, NULL, 10) == kind) {
        note("enable-failed:%u", kind);
        return 1;
    }
    note(g_timestamp ? "enable:%u" : "enable-before-timestamp:%u", kind);
    return 0;
}

int cuptiActivityEnableAndDump(uint32_t kind) {
    note(g_timestamp ? "dump:%u" : "dump-before-timestamp:%u", kind);
    return 0;
}

int cuptiActivityFlushAll(uint32_t flag) {
    if (flag) note("flush-forced", 0);
    return 0;
}

int cuptiActivityGetNextRecord(uint8_t *buffer, size_t valid, void **record) {
    size_t next = 0;
    if (*record) {
        size_t at = (size_t)((uint8_t *)*record - buffer);
        while (next < g_count && g_offsets[next] <= at) next++;
    }
    if (next >= g_count || g_offsets[next] >= valid) return 12; /* MAX_LIMIT_REACHED */
    *record = buffer + g_offsets[next];
    return 0;
}

int cuptiActivityGetNumDroppedRecords(void *context, uint32_t stream, size_t *dropped) {
    (void)context;
    (void)stream;
    *dropped = g_dropped;
    g_dropped = 0;
    return 0;
}

int cuptiGetResultString(int result, const char **s) {
    (void)result;
    *s = "fake CUPTI error";
    return 0;
}

int cuptiSetThreadIdType(uint32_t type) {
    note("tid-type:%u", type);
    return 0;
}

int cuptiGetCallbackName(uint32_t domain, uint32_t cbid, const char **name) {
    static const struct { uint32_t domain, cbid; const char *name; } names[] = {
        {1, 5, "cuCtxGetCurrent"},
        {1, 307, "cuLaunchKernel"},
        {2, 1, "cudaDriverGetVersion_v3020"},
        {2, 131, "cudaStreamSynchronize_v3020"},
        {2, 211, "cudaLaunchKernel_v7000"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].domain == domain && names[i].cbid == cbid) {
            *name = names[i].name;
            return 0;
        }
    }
    return 1; /* INVALID_PARAMETER */
}

int cuptiActivityEnableDriverApi(uint32_t cbid, uint8_t enable) {
    note(enable ? "driver-api:%u" : "driver-api-off:%u", cbid);
    return 0;
}

int cuptiActivityEnableRuntimeApi(uint32_t cbid, uint8_t enable) {
    note(enable ? "runtime-api:%u" : "runtime-api-off:%u", cbid);
    return 0;
}

/* Test hooks. */

/* Delivers `len` bytes of records at `offsets` through the buffer callbacks;
 * `dropped` is reported as CUPTI's own drop count. 0 on success. */
int fake_cupti_deliver(const uint8_t *bytes, size_t len, const size_t *offsets, size_t count, size_t dropped) {
    uint8_t *buffer = NULL;
    size_t size = 0, max_records = 0;
    if (!g_request || !g_complete) return -1;
    g_request(&buffer, &size, &max_records);
    if (!buffer || size < len) return -2;
    memcpy(buffer, bytes, len);
    g_offsets = offsets;
    g_count = count;
    g_dropped += dropped;
    g_complete(NULL, 0, buffer, size, len);
    g_offsets = NULL;
    g_count = 0;
    return 0;
}

const char *fake_cupti_log(void) { return g_log; }

uint64_t fake_cupti_now(void) { return g_timestamp ? g_timestamp() : 0; }
