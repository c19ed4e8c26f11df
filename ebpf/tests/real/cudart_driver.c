/* Drives NVIDIA's real libcudart.so on a machine without a GPU, for
 * strand's real-library tests: each probed synchronize call once, logged in
 * fake_app's format. Without a driver (libcuda.so.1) the runtime fails its
 * initialisation and returns an error, after the uprobes fired.
 *
 *   cudart_driver LIBCUDART          the three calls, logged
 *   cudart_driver LIBCUDART bench N  N cudaStreamSynchronize calls, timed
 *
 * The signatures are those of cuda_runtime_api.h: cudaError_t is an enum
 * (int), streams and events are opaque pointers. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef int cudaError_t;

static cudaError_t (*p_cudaStreamSynchronize)(cudaStream_t);
static cudaError_t (*p_cudaDeviceSynchronize)(void);
static cudaError_t (*p_cudaEventSynchronize)(cudaEvent_t);

static int64_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void* resolve(void* lib, const char* name)
{
	void* p = dlsym(lib, name);
	if (!p) {
		fprintf(stderr, "cudart_driver: no %s\n", name);
		exit(96);
	}
	printf("R %s\n", name);
	return p;
}

#define SYNC(name, call, handle)                                                                             \
	do {                                                                                                 \
		int64_t t0 = mono();                                                                         \
		int r = (call);                                                                              \
		int64_t t1 = mono();                                                                         \
		printf("S api=%s tid=%ld t0=%" PRId64 " t1=%" PRId64 " ret=%d handle=%s\n", name,            \
		       (long)syscall(SYS_gettid), t0, t1, r, handle);                                        \
	} while (0)

int main(int argc, char** argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: cudart_driver LIBCUDART [bench N]\n");
		return 99;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	void* lib = dlopen(argv[1], RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "cudart_driver: %s\n", dlerror());
		return 97;
	}
	p_cudaStreamSynchronize = resolve(lib, "cudaStreamSynchronize");
	p_cudaDeviceSynchronize = resolve(lib, "cudaDeviceSynchronize");
	p_cudaEventSynchronize = resolve(lib, "cudaEventSynchronize");
	if (argc > 3 && strcmp(argv[2], "bench") == 0) {
		long n = atol(argv[3]);
		int64_t start = mono();
		for (long i = 0; i < n; i++) p_cudaStreamSynchronize((cudaStream_t)0x5100);
		printf("bench calls=%ld ns_per_call=%.1f\n", n, (double)(mono() - start) / (double)(n ? n : 1));
		return 0;
	}
	SYNC("cudaStreamSynchronize", p_cudaStreamSynchronize((cudaStream_t)0x5100), "0x5100");
	SYNC("cudaDeviceSynchronize", p_cudaDeviceSynchronize(), "-");
	SYNC("cudaEventSynchronize", p_cudaEventSynchronize((cudaEvent_t)0xe0e0), "0xe0e0");
	SYNC("cudaStreamSynchronize", p_cudaStreamSynchronize(NULL), "0x0");
	return 0;
}
