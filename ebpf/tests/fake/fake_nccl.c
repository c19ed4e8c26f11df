/* A stand-in libnccl.so for strand's tests: NCCL's exported signatures and
 * its internal call structure where strand depends on it (ncclBcast calls
 * ncclBroadcast, ncclCommInitAll calls ncclGetUniqueId and the group calls),
 * and the "NCCL version x.y.z" string NCCL keeps in .rodata. Collectives move
 * no data. FAKE_NCCL_HANG=1 makes ncclAllReduce block forever. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "fake_nccl.h"

#ifndef FAKE_NCCL_CODE
#error "build with -DFAKE_NCCL_CODE=22803 -DFAKE_NCCL_STR='\"2.28.3\"'"
#endif

/* Exported like NCCL's NCCL_API: default visibility, weak (so never inlined). */
#define API __attribute__((visibility("default"), weak, noinline))

__attribute__((used)) const char fake_nccl_version_string[] = "NCCL version " FAKE_NCCL_STR "+cuda12.9";

struct ncclComm { int rank, nranks; };

static int group_depth;

static ncclComm_t new_comm(int rank, int nranks)
{
	ncclComm_t c = calloc(1, sizeof(*c));
	if (c) c->rank = rank, c->nranks = nranks;
	return c;
}

API ncclResult_t ncclGetVersion(int* version) { *version = FAKE_NCCL_CODE; return ncclSuccess; }

/* Not part of NCCL: lets the test program log the id ncclCommInitAll made. */
static ncclUniqueId last_id;
__attribute__((visibility("default"))) void fakeLastUniqueId(ncclUniqueId* id) { *id = last_id; }

API ncclResult_t ncclGetUniqueId(ncclUniqueId* id)
{
	static unsigned counter;
	unsigned seed = (unsigned)getpid() * 2654435761u + ++counter;
	for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) {
		seed = seed * 1103515245u + 12345u;
		id->internal[i] = (char)(seed >> 16);
	}
	last_id = *id;
	return ncclSuccess;
}

static ncclResult_t init(ncclComm_t* comm, int nranks, int rank)
{
	if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
	*comm = new_comm(rank, nranks);
	return *comm ? ncclSuccess : ncclSystemError;
}

API ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank)
{
	(void)id;
	return init(comm, nranks, rank);
}

API ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
					ncclConfig_t* config)
{
	(void)id, (void)config;
	return init(comm, nranks, rank);
}

API ncclResult_t ncclCommInitAll(ncclComm_t* comms, int ndev, const int* devlist)
{
	ncclUniqueId id;
	(void)devlist;
	if (ncclGetUniqueId(&id) != ncclSuccess) return ncclInternalError;
	ncclGroupStart();
	for (int i = 0; i < ndev; i++) init(&comms[i], ndev, i);
	ncclGroupEnd();
	return ncclSuccess;
}

API ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm, ncclConfig_t* config)
{
	(void)config;
	if (!comm || !newcomm) return ncclInvalidArgument;
	*newcomm = color == NCCL_SPLIT_NOCOLOR ? NULL : new_comm(key < 0 ? -key : key, comm->nranks);
	return ncclSuccess;
}

API ncclResult_t ncclCommDestroy(ncclComm_t comm) { free(comm); return ncclSuccess; }
API ncclResult_t ncclCommAbort(ncclComm_t comm) { free(comm); return ncclSuccess; }

#define CHECK_COMM(c) do { if (!(c)) return ncclInvalidArgument; } while (0)

API ncclResult_t ncclAllReduce(const void* s, void* r, size_t count, ncclDataType_t dt, ncclRedOp_t op,
			       ncclComm_t comm, cudaStream_t stream)
{
	(void)s, (void)r, (void)count, (void)dt, (void)op, (void)stream;
	if (getenv("FAKE_NCCL_HANG")) {
		fprintf(stdout, "hanging\n");
		fflush(stdout);
		for (;;) pause();
	}
	CHECK_COMM(comm);
	return ncclSuccess;
}

API ncclResult_t ncclBroadcast(const void* s, void* r, size_t count, ncclDataType_t dt, int root, ncclComm_t comm,
			       cudaStream_t stream)
{
	(void)s, (void)r, (void)count, (void)dt, (void)stream;
	CHECK_COMM(comm);
	return root < comm->nranks ? ncclSuccess : ncclInvalidArgument;
}

API ncclResult_t ncclBcast(void* buff, size_t count, ncclDataType_t dt, int root, ncclComm_t comm,
			   cudaStream_t stream)
{
	return ncclBroadcast(buff, buff, count, dt, root, comm, stream);
}

API ncclResult_t ncclReduce(const void* s, void* r, size_t count, ncclDataType_t dt, ncclRedOp_t op, int root,
			    ncclComm_t comm, cudaStream_t stream)
{
	(void)s, (void)r, (void)count, (void)dt, (void)op, (void)root, (void)stream;
	CHECK_COMM(comm);
	return ncclSuccess;
}

API ncclResult_t ncclAllGather(const void* s, void* r, size_t count, ncclDataType_t dt, ncclComm_t comm,
			       cudaStream_t stream)
{
	(void)s, (void)r, (void)count, (void)dt, (void)stream;
	CHECK_COMM(comm);
	return ncclSuccess;
}

API ncclResult_t ncclReduceScatter(const void* s, void* r, size_t count, ncclDataType_t dt, ncclRedOp_t op,
				   ncclComm_t comm, cudaStream_t stream)
{
	(void)s, (void)r, (void)count, (void)dt, (void)op, (void)stream;
	CHECK_COMM(comm);
	return ncclSuccess;
}

API ncclResult_t ncclAlltoAll(const void* s, void* r, size_t count, ncclDataType_t dt, ncclComm_t comm,
			      cudaStream_t stream)
{
	(void)s, (void)r, (void)count, (void)dt, (void)stream;
	CHECK_COMM(comm);
	return ncclSuccess;
}

API ncclResult_t ncclSend(const void* s, size_t count, ncclDataType_t dt, int peer, ncclComm_t comm,
			  cudaStream_t stream)
{
	(void)s, (void)count, (void)dt, (void)stream;
	CHECK_COMM(comm);
	return peer < comm->nranks ? ncclSuccess : ncclInvalidArgument;
}

API ncclResult_t ncclRecv(void* r, size_t count, ncclDataType_t dt, int peer, ncclComm_t comm,
			  cudaStream_t stream)
{
	(void)r, (void)count, (void)dt, (void)stream;
	CHECK_COMM(comm);
	return peer < comm->nranks ? ncclSuccess : ncclInvalidArgument;
}

API ncclResult_t ncclGroupStart(void) { group_depth++; return ncclSuccess; }
API ncclResult_t ncclGroupEnd(void) { return group_depth-- > 0 ? ncclSuccess : ncclInvalidUsage; }
