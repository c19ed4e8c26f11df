/* Drives NVIDIA's real libnccl.so.2 on a machine without a GPU, for
 * strand's real-library tests. Built against the nccl.h of the same wheel
 * (with tests/real/stub/ for the CUDA types it names), so every call has
 * that release's real signature.
 *
 *   nccl_driver LIBNCCL IDHEX          every probed function once, logged
 *   nccl_driver LIBNCCL IDHEX bench N  N ncclAllReduce calls, timed
 *
 * Output, one line each:
 *   R name           a probed function dlsym resolves
 *   V code=.. ret=.. ncclGetVersion
 *   U ret=..         ncclGetUniqueId (does it work without a GPU?)
 *   C op=.. ...      a call that makes an nccl_calls row, in fake_app's format
 *
 * Without a GPU the communicator inits fail, so the collectives get an
 * invalid communicator: from 2.21 a zeroed block whose magic numbers do not
 * match, which NCCL's CommCheck refuses before touching anything else;
 * before 2.21, which only checks for NULL there, NULL. The uprobes fire all
 * the same, with every argument as a real caller passes it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <nccl.h>

#define HAS_SPLIT (NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0))
#define HAS_ALLTOALL (NCCL_VERSION_CODE >= NCCL_VERSION(2, 28, 0))
#define HAS_GROW (NCCL_VERSION_CODE >= NCCL_VERSION(2, 29, 0))

static void* lib;

/* Resolves `name` into p_name with the header's type, and reports it. */
#define RESOLVE(name)                                                                  \
	static __typeof__(name)* p_##name;                                             \
	static void resolve_##name(void)                                               \
	{                                                                              \
		p_##name = (__typeof__(name)*)dlsym(lib, #name);                        \
		if (!p_##name) {                                                       \
			fprintf(stderr, "nccl_driver: %s does not export %s\n", "libnccl", #name); \
			exit(96);                                                      \
		}                                                                      \
		printf("R %s\n", #name);                                               \
	}
RESOLVE(ncclGetVersion)
RESOLVE(ncclGetUniqueId)
RESOLVE(ncclCommInitRank)
RESOLVE(ncclCommInitRankConfig)
RESOLVE(ncclCommInitAll)
RESOLVE(ncclCommDestroy)
RESOLVE(ncclCommAbort)
RESOLVE(ncclAllReduce)
RESOLVE(ncclBroadcast)
RESOLVE(ncclBcast)
RESOLVE(ncclReduce)
RESOLVE(ncclAllGather)
RESOLVE(ncclReduceScatter)
RESOLVE(ncclSend)
RESOLVE(ncclRecv)
RESOLVE(ncclGroupStart)
RESOLVE(ncclGroupEnd)
#if HAS_SPLIT
RESOLVE(ncclCommSplit)
#endif
#if HAS_ALLTOALL
RESOLVE(ncclAlltoAll)
#endif
#if HAS_GROW
RESOLVE(ncclCommGrow)
#endif

static void resolve_all(void)
{
	resolve_ncclGetVersion(), resolve_ncclGetUniqueId(), resolve_ncclCommInitRank();
	resolve_ncclCommInitRankConfig(), resolve_ncclCommInitAll(), resolve_ncclCommDestroy();
	resolve_ncclCommAbort(), resolve_ncclAllReduce(), resolve_ncclBroadcast(), resolve_ncclBcast();
	resolve_ncclReduce(), resolve_ncclAllGather(), resolve_ncclReduceScatter(), resolve_ncclSend();
	resolve_ncclRecv(), resolve_ncclGroupStart(), resolve_ncclGroupEnd();
#if HAS_SPLIT
	resolve_ncclCommSplit();
#endif
#if HAS_ALLTOALL
	resolve_ncclAlltoAll();
#endif
#if HAS_GROW
	resolve_ncclCommGrow();
#endif
}

static int64_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long tid(void) { return syscall(SYS_gettid); }

static int64_t t0, t1;
static int r, group;

#define LOG(fmt, ...) do { printf(fmt "\n", __VA_ARGS__); fflush(stdout); } while (0)
#define TIMED(call) ({ t0 = mono(); r = (int)(call); t1 = mono(); })
#define COMMON "op=%s tid=%ld t0=%" PRId64 " t1=%" PRId64 " ret=%d group=%d"
#define DATA COMMON " count=%zu dt=%d comm=%p stream=%p"

static void hex(const ncclUniqueId* id, char out[2 * NCCL_UNIQUE_ID_BYTES + 1])
{
	for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) sprintf(out + 2 * i, "%02x", (unsigned char)id->internal[i]);
}

static void unhex(const char* s, ncclUniqueId* id)
{
	if (strlen(s) != 2 * NCCL_UNIQUE_ID_BYTES) { fprintf(stderr, "nccl_driver: bad id\n"); exit(99); }
	for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1) exit(99);
		id->internal[i] = (char)v;
	}
}

int main(int argc, char** argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: nccl_driver LIBNCCL IDHEX [bench N]\n");
		return 99;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	lib = dlopen(argv[1], RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "nccl_driver: %s\n", dlerror());
		return 97;
	}
	resolve_all();
	ncclUniqueId id;
	unhex(argv[2], &id);
	/* Invalid communicators: zeroed memory, far larger than any ncclComm. */
	char* zero = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (zero == MAP_FAILED) return 95;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 21, 0)
	ncclComm_t bad = (ncclComm_t)(zero + 4096), bad2 = (ncclComm_t)(zero + 8192);
#else
	ncclComm_t bad = NULL, bad2 = NULL;
#endif
	cudaStream_t s1 = (cudaStream_t)0x5100, s2 = (cudaStream_t)0x5200;

	if (argc > 4 && strcmp(argv[3], "bench") == 0) {
		long n = atol(argv[4]);
		int64_t start = mono();
		for (long i = 0; i < n; i++) p_ncclAllReduce(NULL, NULL, 1024, ncclFloat32, ncclSum, bad, s1);
		int64_t end = mono();
		printf("bench calls=%ld ns_per_call=%.1f\n", n, (double)(end - start) / (double)(n ? n : 1));
		return 0;
	}

	int version = 0;
	r = p_ncclGetVersion(&version);
	LOG("V code=%d ret=%d", version, r);
	ncclUniqueId made;
	r = p_ncclGetUniqueId(&made);
	LOG("U ret=%d", r);

	char h[2 * NCCL_UNIQUE_ID_BYTES + 1];
	hex(&id, h);
	ncclComm_t c = NULL;
	TIMED(p_ncclCommInitRank(&c, 4, id, 1));
	LOG("C " COMMON " nranks=%d rank=%d newcomm=%p id=%s", "comm_init_rank", tid(), t0, t1, r, group, 4, 1, (void*)c, h);
	ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
	c = NULL;
	TIMED(p_ncclCommInitRankConfig(&c, 8, id, 5, &config));
	LOG("C " COMMON " nranks=%d rank=%d newcomm=%p id=%s", "comm_init_rank", tid(), t0, t1, r, group, 8, 5, (void*)c, h);
	ncclComm_t comms[2] = { NULL, NULL };
	TIMED(p_ncclCommInitAll(comms, 2, NULL));
	LOG("C " COMMON " nranks=%d", "comm_init_all", tid(), t0, t1, r, group, 2);

	TIMED(p_ncclAllReduce(NULL, NULL, 1024, ncclFloat32, ncclSum, bad, s1));
	LOG("C " DATA " redop=%d", "allreduce", tid(), t0, t1, r, group, (size_t)1024, (int)ncclFloat32, (void*)bad, (void*)s1, (int)ncclSum);
	TIMED(p_ncclBroadcast(NULL, NULL, 4096, ncclBfloat16, 1, bad, s2));
	LOG("C " DATA " root=%d", "broadcast", tid(), t0, t1, r, group, (size_t)4096, (int)ncclBfloat16, (void*)bad, (void*)s2, 1);
	TIMED(p_ncclBcast(NULL, 10, ncclInt8, 3, bad2, s1));
	LOG("C " DATA " root=%d", "broadcast", tid(), t0, t1, r, group, (size_t)10, (int)ncclInt8, (void*)bad2, (void*)s1, 3);
	TIMED(p_ncclReduce(NULL, NULL, 333, ncclFloat64, ncclMax, 2, bad, s2));
	LOG("C " DATA " redop=%d root=%d", "reduce", tid(), t0, t1, r, group, (size_t)333, (int)ncclFloat64, (void*)bad, (void*)s2, (int)ncclMax, 2);
	TIMED(p_ncclAllGather(NULL, NULL, 77, ncclInt32, bad2, s2));
	LOG("C " DATA, "allgather", tid(), t0, t1, r, group, (size_t)77, (int)ncclInt32, (void*)bad2, (void*)s2);
	TIMED(p_ncclReduceScatter(NULL, NULL, 5000, ncclFloat16, ncclAvg, bad, s1));
	LOG("C " DATA " redop=%d", "reducescatter", tid(), t0, t1, r, group, (size_t)5000, (int)ncclFloat16, (void*)bad, (void*)s1, (int)ncclAvg);
#if HAS_ALLTOALL
	TIMED(p_ncclAlltoAll(NULL, NULL, 64, ncclUint8, bad, s2));
	LOG("C " DATA, "alltoall", tid(), t0, t1, r, group, (size_t)64, (int)ncclUint8, (void*)bad, (void*)s2);
#endif
	TIMED(p_ncclSend(NULL, 100, ncclFloat32, 3, bad, s1));
	LOG("C " DATA " peer=%d", "send", tid(), t0, t1, r, group, (size_t)100, (int)ncclFloat32, (void*)bad, (void*)s1, 3);
	TIMED(p_ncclRecv(NULL, (size_t)1 << 33, ncclUint64, 0, bad2, s2));
	LOG("C " DATA " peer=%d", "recv", tid(), t0, t1, r, group, (size_t)1 << 33, (int)ncclUint64, (void*)bad2, (void*)s2, 0);

	group = 1;
	TIMED(p_ncclGroupStart());
	LOG("C " COMMON, "group_start", tid(), t0, t1, r, group);
	TIMED(p_ncclAllReduce(NULL, NULL, 7, ncclInt64, ncclProd, bad, s2));
	LOG("C " DATA " redop=%d", "allreduce", tid(), t0, t1, r, group, (size_t)7, (int)ncclInt64, (void*)bad, (void*)s2, (int)ncclProd);
	TIMED(p_ncclSend(NULL, 9, ncclUint32, 1, bad, s2));
	LOG("C " DATA " peer=%d", "send", tid(), t0, t1, r, group, (size_t)9, (int)ncclUint32, (void*)bad, (void*)s2, 1);
	TIMED(p_ncclGroupEnd());
	LOG("C " COMMON, "group_end", tid(), t0, t1, r, group);
	group = 0;

#if HAS_SPLIT
	ncclComm_t child = NULL;
	TIMED(p_ncclCommSplit(bad, 1, 7, &child, NULL));
	LOG("C " COMMON " comm=%p color=%d key=%d newcomm=%p", "comm_split", tid(), t0, t1, r, group, (void*)bad, 1, 7,
	    (void*)child);
#endif
#if HAS_GROW
	ncclComm_t grown = NULL;
	r = p_ncclCommGrow(bad, 8, NULL, -1, &grown, NULL);
	LOG("G ret=%d", r);
#endif
	/* NULL: the one invalid communicator destroy and abort refuse without reading it. */
	TIMED(p_ncclCommDestroy(NULL));
	LOG("C " COMMON " comm=%p", "comm_destroy", tid(), t0, t1, r, group, (void*)NULL);
	TIMED(p_ncclCommAbort(NULL));
	LOG("C " COMMON " comm=%p", "comm_abort", tid(), t0, t1, r, group, (void*)NULL);
	return 0;
}
