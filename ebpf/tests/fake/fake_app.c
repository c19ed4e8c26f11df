/* The test program for strand's eBPF tests: loads the fake NCCL and CUDA
 * libraries with dlopen and makes known calls, logging each one (arguments,
 * return value, thread, CLOCK_MONOTONIC before and after) on stdout so that
 * the test can compare what the tracer captured field by field.
 *
 *   fake_app [--ns SRC DST] LIBDIR MODE ARGS...
 *     hold                          map the libraries, wait for EOF on stdin
 *     rank IDA RA NA IDB RB NB CODE ranks RA of NA on id IDA (and RB of NB on
 *                                   IDB unless IDB is "-"), exit with CODE
 *     initall NDEV                  ncclCommInitAll and one all-reduce per comm
 *     hang IDA                      block inside ncclAllReduce (to be killed)
 *     bench N [RATE]                N ncclAllReduce calls, no log (benchmark);
 *                                   RATE > 0 paces them to RATE calls/s
 *   --ns SRC DST: first enter a private mount namespace and bind SRC on DST,
 *   so LIBDIR (under DST) exists only for this process (like a container).
 *
 * Every mode prints "ready" once the libraries are loaded and waits for a
 * line on stdin before calling anything, so the tracer can attach first. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "fake_nccl.h"

static void die(const char* what) { fprintf(stderr, "fake_app: %s: %s\n", what, dlerror() ? dlerror() : "error"); exit(99); }

#define FN(name) static __typeof__(name)* p_##name;
FN(ncclGetVersion) FN(ncclGetUniqueId) FN(ncclCommInitRank) FN(ncclCommInitRankConfig) FN(ncclCommInitAll)
FN(ncclCommSplit) FN(ncclCommDestroy) FN(ncclCommAbort) FN(ncclAllReduce) FN(ncclBroadcast) FN(ncclBcast)
FN(ncclReduce) FN(ncclAllGather) FN(ncclReduceScatter) FN(ncclAlltoAll) FN(ncclSend) FN(ncclRecv)
FN(ncclGroupStart) FN(ncclGroupEnd)
static void (*p_fakeLastUniqueId)(ncclUniqueId*);
static int (*p_cudaStreamSynchronize)(void*);
static int (*p_cudaDeviceSynchronize)(void);
static int (*p_cudaEventSynchronize)(void*);
static int (*p_cuStreamSynchronize)(void*);
static int (*p_cuCtxSynchronize)(void);
static int (*p_cuEventSynchronize)(void*);

static void* sym(void* lib, const char* name)
{
	void* p = dlsym(lib, name);
	if (!p) die(name);
	return p;
}

static void load(const char* dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/libnccl.so.2", dir);
	void* nccl = dlopen(path, RTLD_NOW);
	if (!nccl) die(path);
	snprintf(path, sizeof path, "%s/libcudart.so.12", dir);
	void* rt = dlopen(path, RTLD_NOW);
	if (!rt) die(path);
	snprintf(path, sizeof path, "%s/libcuda.so.1", dir);
	void* drv = dlopen(path, RTLD_NOW);
	if (!drv) die(path);
#define LOAD(lib, name) p_##name = sym(lib, #name)
	LOAD(nccl, ncclGetVersion); LOAD(nccl, ncclGetUniqueId); LOAD(nccl, ncclCommInitRank);
	LOAD(nccl, ncclCommInitRankConfig); LOAD(nccl, ncclCommInitAll); LOAD(nccl, ncclCommSplit);
	LOAD(nccl, ncclCommDestroy); LOAD(nccl, ncclCommAbort); LOAD(nccl, ncclAllReduce); LOAD(nccl, ncclBroadcast);
	LOAD(nccl, ncclBcast); LOAD(nccl, ncclReduce); LOAD(nccl, ncclAllGather); LOAD(nccl, ncclReduceScatter);
	LOAD(nccl, ncclAlltoAll); LOAD(nccl, ncclSend); LOAD(nccl, ncclRecv); LOAD(nccl, ncclGroupStart);
	LOAD(nccl, ncclGroupEnd); LOAD(nccl, fakeLastUniqueId);
	LOAD(rt, cudaStreamSynchronize); LOAD(rt, cudaDeviceSynchronize); LOAD(rt, cudaEventSynchronize);
	LOAD(drv, cuStreamSynchronize); LOAD(drv, cuCtxSynchronize); LOAD(drv, cuEventSynchronize);
}

static int64_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long tid(void) { return syscall(SYS_gettid); }

static int group; /* the app's own index of the enclosing group, 0 outside */
static int groups_seen;

/* One log line: C op=... fields... (fields absent = not applicable). */
#define LOG(fmt, ...) do { printf(fmt "\n", __VA_ARGS__); fflush(stdout); } while (0)
#define TIMED(call) ({ t0 = mono(); r = (call); t1 = mono(); })

static void hex(const ncclUniqueId* id, char out[2 * NCCL_UNIQUE_ID_BYTES + 1])
{
	for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) sprintf(out + 2 * i, "%02x", (unsigned char)id->internal[i]);
}

static void unhex(const char* s, ncclUniqueId* id)
{
	if (strlen(s) != 2 * NCCL_UNIQUE_ID_BYTES) { fprintf(stderr, "bad id\n"); exit(99); }
	for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) {
		unsigned v;
		sscanf(s + 2 * i, "%2x", &v);
		id->internal[i] = (char)v;
	}
}

static int64_t t0, t1;
static int r;

#define COMMON "op=%s tid=%ld t0=%" PRId64 " t1=%" PRId64 " ret=%d group=%d"
#define DATA COMMON " count=%zu dt=%d comm=%p stream=%p"

static void allreduce(size_t n, ncclDataType_t dt, ncclRedOp_t op, ncclComm_t c, void* s)
{
	TIMED(p_ncclAllReduce(NULL, NULL, n, dt, op, c, s));
	LOG("C " DATA " redop=%d", "allreduce", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s, (int)op);
}
static void broadcast(size_t n, ncclDataType_t dt, int root, ncclComm_t c, void* s)
{
	TIMED(p_ncclBroadcast(NULL, NULL, n, dt, root, c, s));
	LOG("C " DATA " root=%d", "broadcast", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s, root);
}
static void bcast(size_t n, ncclDataType_t dt, int root, ncclComm_t c, void* s)
{
	TIMED(p_ncclBcast(NULL, n, dt, root, c, s));
	LOG("C " DATA " root=%d", "broadcast", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s, root);
}
static void reduce(size_t n, ncclDataType_t dt, ncclRedOp_t op, int root, ncclComm_t c, void* s)
{
	TIMED(p_ncclReduce(NULL, NULL, n, dt, op, root, c, s));
	LOG("C " DATA " redop=%d root=%d", "reduce", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s, (int)op, root);
}
static void allgather(size_t n, ncclDataType_t dt, ncclComm_t c, void* s)
{
	TIMED(p_ncclAllGather(NULL, NULL, n, dt, c, s));
	LOG("C " DATA, "allgather", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s);
}
static void reducescatter(size_t n, ncclDataType_t dt, ncclRedOp_t op, ncclComm_t c, void* s)
{
	TIMED(p_ncclReduceScatter(NULL, NULL, n, dt, op, c, s));
	LOG("C " DATA " redop=%d", "reducescatter", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s, (int)op);
}
static void alltoall(size_t n, ncclDataType_t dt, ncclComm_t c, void* s)
{
	TIMED(p_ncclAlltoAll(NULL, NULL, n, dt, c, s));
	LOG("C " DATA, "alltoall", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s);
}
static void send(size_t n, ncclDataType_t dt, int peer, ncclComm_t c, void* s)
{
	TIMED(p_ncclSend(NULL, n, dt, peer, c, s));
	LOG("C " DATA " peer=%d", "send", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s, peer);
}
static void recv(size_t n, ncclDataType_t dt, int peer, ncclComm_t c, void* s)
{
	TIMED(p_ncclRecv(NULL, n, dt, peer, c, s));
	LOG("C " DATA " peer=%d", "recv", tid(), t0, t1, r, group, n, (int)dt, (void*)c, s, peer);
}
static void group_start(void)
{
	if (group == 0) group = ++groups_seen;
	TIMED(p_ncclGroupStart());
	LOG("C " COMMON, "group_start", tid(), t0, t1, r, group);
}
static int group_depth;
static void group_end(void)
{
	TIMED(p_ncclGroupEnd());
	LOG("C " COMMON, "group_end", tid(), t0, t1, r, group);
	if (--group_depth == 0) group = 0;
}
#define GROUP_START() (group_depth++, group_start())

static ncclComm_t init_rank(const ncclUniqueId* id, int nranks, int rank, int with_config)
{
	ncclComm_t c = NULL;
	ncclConfig_t cfg = { sizeof(ncclConfig_t), 0xcafebeef, 22803, 1 };
	char h[2 * NCCL_UNIQUE_ID_BYTES + 1];
	if (with_config) TIMED(p_ncclCommInitRankConfig(&c, nranks, *id, rank, &cfg));
	else TIMED(p_ncclCommInitRank(&c, nranks, *id, rank));
	hex(id, h);
	LOG("C " COMMON " nranks=%d rank=%d newcomm=%p id=%s", "comm_init_rank", tid(), t0, t1, r, group, nranks, rank,
	    (void*)c, h);
	return c;
}
static ncclComm_t split(ncclComm_t parent, int color, int key)
{
	ncclComm_t c = NULL;
	TIMED(p_ncclCommSplit(parent, color, key, &c, NULL));
	LOG("C " COMMON " comm=%p color=%d key=%d newcomm=%p", "comm_split", tid(), t0, t1, r, group, (void*)parent,
	    color, key, (void*)c);
	return c;
}
static void destroy(ncclComm_t c, int abort_)
{
	TIMED(abort_ ? p_ncclCommAbort(c) : p_ncclCommDestroy(c));
	LOG("C " COMMON " comm=%p", abort_ ? "comm_abort" : "comm_destroy", tid(), t0, t1, r, group, (void*)c);
}

static void* syncs(void* arg)
{
	(void)arg;
#define SYNC(name, call, handle)                                                                              \
	do {                                                                                                      \
		TIMED(call);                                                                                      \
		LOG("S api=%s tid=%ld t0=%" PRId64 " t1=%" PRId64 " ret=%d handle=%s", name, tid(), t0, t1, r, handle); \
	} while (0)
	SYNC("cudaStreamSynchronize", p_cudaStreamSynchronize((void*)0x5100), "0x5100");
	SYNC("cudaDeviceSynchronize", p_cudaDeviceSynchronize(), "-");
	SYNC("cudaEventSynchronize", p_cudaEventSynchronize((void*)0xe0e0), "0xe0e0");
	SYNC("cudaEventSynchronize", p_cudaEventSynchronize(NULL), "0x0");
	SYNC("cuStreamSynchronize", p_cuStreamSynchronize((void*)0x5200), "0x5200");
	SYNC("cuCtxSynchronize", p_cuCtxSynchronize(), "-");
	SYNC("cuEventSynchronize", p_cuEventSynchronize((void*)0xe1e1), "0xe1e1");
	return NULL;
}

static void ready(void)
{
	char line[64];
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof line, stdin)) exit(98);
}

/* The script of one rank: every probed call kind, sizes and types that vary. */
static int run_rank(int argc, char** argv)
{
	if (argc < 7) return 99;
	ncclUniqueId ida, idb;
	int ra = atoi(argv[1]), na = atoi(argv[2]), has_b = strcmp(argv[3], "-") != 0;
	int rb = atoi(argv[4]), nb = atoi(argv[5]), code = atoi(argv[6]);
	void* s1 = (void*)0x51;
	void* s2 = (void*)0x52;
	unhex(argv[0], &ida);
	if (has_b) unhex(argv[3], &idb);
	ready();

	int version = 0;
	p_ncclGetVersion(&version); /* bookkeeping only: no row */
	ncclComm_t a = init_rank(&ida, na, ra, 0);
	ncclComm_t b = has_b ? init_rank(&idb, nb, rb, 1) : NULL;

	allreduce(1024, ncclFloat32, ncclSum, a, s1);
	broadcast(4096, ncclBfloat16, 1, a, s1);
	bcast(10, ncclInt8, 0, a, s2);
	reduce(333, ncclFloat64, ncclMax, 2 % na, a, s1);
	allgather(77, ncclInt32, a, s1);
	reducescatter(5000, ncclFloat16, ncclAvg, a, s2);
	alltoall(64, ncclUint8, a, s1);

	GROUP_START();
	send(100, ncclFloat32, (ra + 1) % na, a, s1);
	recv(100, ncclFloat32, (ra + na - 1) % na, a, s1);
	allreduce(7, ncclInt64, ncclProd, a, s2);
	if (b) allreduce(9, ncclInt64, ncclProd, b, s2);
	group_end();

	GROUP_START();
	GROUP_START();
	send(1 << 20, ncclUint32, (ra + 1) % na, a, s1);
	group_end();
	group_end();
	recv(1 << 20, ncclUint32, (ra + na - 1) % na, a, s1);

	if (b) {
		allreduce((size_t)1 << 26, ncclBfloat16, ncclSum, b, s1);
		allgather(12345, ncclFloat8e4m3, b, s2);
		allreduce(3, ncclUint64, ncclMin, b, s2);
	}

	ncclComm_t c1 = split(a, ra % 2, -ra);
	allreduce(512, ncclFloat32, ncclMin, c1, s1);
	allreduce(513, ncclFloat32, ncclMin, c1, s1);
	destroy(c1, 0);
	ncclComm_t c2 = split(a, ra == 3 ? NCCL_SPLIT_NOCOLOR : 1, ra);
	if (c2) {
		broadcast(8, ncclInt64, 0, c2, s2);
		destroy(c2, 1);
	}
	allreduce(1, ncclFloat32, ncclSum, a, s1);
	reducescatter(16, ncclFloat32, ncclSum, NULL, s1); /* ncclInvalidArgument */

	pthread_t t;
	pthread_create(&t, NULL, syncs, NULL);
	pthread_join(t, NULL);

	if (b) destroy(b, 0);
	destroy(a, 0);
	return code;
}

static int run_initall(int n)
{
	ncclComm_t comms[8] = { 0 };
	ncclUniqueId id;
	char h[2 * NCCL_UNIQUE_ID_BYTES + 1];
	if (n > 8) return 99;
	ready();
	TIMED(p_ncclCommInitAll(comms, n, NULL));
	p_fakeLastUniqueId(&id);
	hex(&id, h);
	printf("C " COMMON " nranks=%d id=%s", "comm_init_all", tid(), t0, t1, r, group, n, h);
	for (int i = 0; i < n; i++) printf(" comm%d=%p", i, (void*)comms[i]);
	printf("\n");
	for (int i = 0; i < n; i++) allreduce(256 * (i + 1), ncclFloat32, ncclSum, comms[i], (void*)0x61);
	for (int i = 0; i < n; i++) destroy(comms[i], 0);
	return 0;
}

int main(int argc, char** argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 3 && strcmp(argv[1], "--ns") == 0) {
		if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		    mount(argv[2], argv[3], NULL, MS_BIND, NULL)) {
			perror("fake_app: private bind mount");
			return 97;
		}
		argv += 3, argc -= 3;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: fake_app [--ns SRC DST] LIBDIR MODE ARGS...\n");
		return 99;
	}
	load(argv[1]);
	const char* mode = argv[2];
	if (strcmp(mode, "hold") == 0) {
		char buf[64];
		printf("ready\n");
		fflush(stdout);
		while (fgets(buf, sizeof buf, stdin)) {}
		return 0;
	}
	if (strcmp(mode, "rank") == 0) return run_rank(argc - 3, argv + 3);
	if (strcmp(mode, "initall") == 0 && argc > 3) return run_initall(atoi(argv[3]));
	if (strcmp(mode, "hang") == 0 && argc > 3) {
		ncclUniqueId id;
		unhex(argv[3], &id);
		ready();
		ncclComm_t c = init_rank(&id, 1, 0, 0);
		setenv("FAKE_NCCL_HANG", "1", 1);
		allreduce(99, ncclFloat32, ncclSum, c, (void*)0x71);
		return 0;
	}
	if (strcmp(mode, "bench") == 0 && argc > 3) {
		long n = atol(argv[3]);
		long rate = argc > 4 ? atol(argv[4]) : 0;
		ncclUniqueId id = { { 0 } };
		ncclComm_t c = NULL;
		ready();
		p_ncclCommInitRank(&c, 1, id, 0);
		int64_t start = mono();
		for (long i = 0; i < n; i++) {
			p_ncclAllReduce(NULL, NULL, 1024, ncclFloat32, ncclSum, c, NULL);
			/* Paced: at each millisecond's quota, sleep to the next millisecond. */
			if (rate > 0 && (i + 1) % (rate / 1000 > 0 ? rate / 1000 : 1) == 0) {
				int64_t due = start + (int64_t)((double)(i + 1) * 1e9 / (double)rate);
				struct timespec ts = { due / 1000000000, due % 1000000000 };
				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
			}
		}
		int64_t end = mono();
		printf("bench calls=%ld ns_per_call=%.1f\n", n, (double)(end - start) / (double)(n ? n : 1));
		p_ncclCommDestroy(c);
		return 0;
	}
	fprintf(stderr, "fake_app: unknown mode %s\n", mode);
	return 99;
}
