/* SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0) */
/*
 * Records shared by the BPF programs (strand.bpf.c) and the Rust side.
 * Rust reads them through the skeleton's generated `types` module, so the
 * layout is defined here only. Every field is a fixed-size integer; the
 * structs are padded explicitly so that C and Rust agree.
 */
#ifndef STRAND_H
#define STRAND_H

#define UID_BYTES 128    /* NCCL_UNIQUE_ID_BYTES */
#define MAX_INIT_ALL 32  /* communicators read back from one ncclCommInitAll */
#define PATH_BYTES 256   /* exec filename, truncated */
#define COMM_BYTES 16    /* TASK_COMM_LEN */

/* NCCL entry points. The numbering is part of the contract with src/nccl.rs. */
enum nccl_op {
	OP_ALLREDUCE = 1,
	OP_BROADCAST = 2,
	OP_BCAST = 3,
	OP_REDUCE = 4,
	OP_ALLGATHER = 5,
	OP_REDUCESCATTER = 6,
	OP_ALLTOALL = 7,
	OP_SEND = 8,
	OP_RECV = 9,
	OP_GROUP_START = 10,
	OP_GROUP_END = 11,
	OP_INIT_RANK = 12,
	OP_INIT_RANK_CONFIG = 13,
	OP_INIT_ALL = 14,
	OP_SPLIT = 15,
	OP_DESTROY = 16,
	OP_ABORT = 17,
	/* Probed for bookkeeping only; they produce no nccl_calls row. */
	OP_GET_UNIQUE_ID = 18,
	OP_GET_VERSION = 19,
	OP_GROW = 20,
};

/* CUDA synchronize entry points (contract with src/events.rs). */
enum cuda_api {
	API_CUDA_STREAM_SYNC = 1,
	API_CUDA_DEVICE_SYNC = 2,
	API_CUDA_EVENT_SYNC = 3,
	API_CU_STREAM_SYNC = 4,
	API_CU_CTX_SYNC = 5,
	API_CU_EVENT_SYNC = 6,
};

enum event_kind {
	EV_NCCL_CALL = 1,
	EV_NCCL_INIT = 2,
	EV_NCCL_VERSION = 3,
	EV_CUDA_SYNC = 4,
	EV_EXEC = 5,
	EV_EXIT = 6,
};

/* Index of the per-source counters in the `lost` map. */
enum source {
	SRC_NCCL = 0,
	SRC_CUDA = 1,
	SRC_PROC = 2,
	/* Calls not recorded because a state map was full. */
	SRC_NCCL_STATE = 3,
	SRC_CUDA_STATE = 4,
	/* Pids not tracked because `tracked` was full (their exit is missed). */
	SRC_TRACKED = 5,
	NR_COUNTERS = 6,
};

/* Index of a probed function in the `calls` map: its enum nccl_op value for
 * NCCL, CALL_CUDA + its enum cuda_api value for CUDA. */
#define CALL_CUDA 32
#define NR_CALLS 40

/* nccl_call.flags / nccl_init.flags / cuda_sync.flags */
#define F_COMM_KNOWN 1   /* the communicator was created while traced: seq is valid */
#define F_SPLIT_COUNT 2  /* split_count is valid (parent known and not grown) */
#define F_UNFINISHED 4   /* the thread exited inside the call: no exit time, no return code */
#define F_UID 8          /* nccl_init.uid holds the unique id */
#define F_HANDLE 16      /* cuda_sync.handle is an argument (stream or event) */

/* One NCCL call other than communicator creation from a unique id. */
struct nccl_call {
	__u32 kind; /* EV_NCCL_CALL */
	__u32 op;
	__u32 pid;
	__u32 tid;
	__u64 enter_ns; /* CLOCK_MONOTONIC */
	__u64 exit_ns;  /* 0 when F_UNFINISHED */
	__u64 count;
	__u64 comm;     /* ncclComm_t argument (the parent for a split) */
	__u64 stream;
	__u64 new_comm; /* child of a split */
	__u64 group_id; /* 0: outside a group */
	__u64 seq;      /* valid with F_COMM_KNOWN */
	__s32 datatype;
	__s32 redop;
	__s32 root_peer;
	__s32 color;
	__s32 key;
	__s32 ret;
	__u32 split_count; /* the parent's split counter after this split (NCCL's splitCount/childCount) */
	__u32 flags;
};

/* ncclCommInitRank, ncclCommInitRankConfig, ncclCommInitAll. */
struct nccl_init {
	__u32 kind; /* EV_NCCL_INIT */
	__u32 op;
	__u32 pid;
	__u32 tid;
	__u64 enter_ns;
	__u64 exit_ns;
	__u64 group_id;
	__s32 nranks;
	__s32 rank;
	__s32 ret;
	__u32 ncomms; /* valid entries in comms */
	__u32 flags;
	__u32 pad;
	__u8 uid[UID_BYTES];
	__u64 comms[MAX_INIT_ALL];
};

/* Return value of ncclGetVersion, for libraries without a version string. */
struct nccl_version {
	__u32 kind; /* EV_NCCL_VERSION */
	__u32 pid;
	__s32 version;
	__u32 pad;
};

struct cuda_sync {
	__u32 kind; /* EV_CUDA_SYNC */
	__u32 api;
	__u32 pid;
	__u32 tid;
	__u64 enter_ns;
	__u64 exit_ns;
	__u64 handle;
	__s32 ret;
	__u32 flags;
};

struct proc_exec {
	__u32 kind; /* EV_EXEC */
	__u32 pid;
	__u32 ppid;
	__u32 pad;
	__u64 ts_ns;
	char comm[COMM_BYTES];
	char filename[PATH_BYTES];
};

struct proc_exit {
	__u32 kind; /* EV_EXIT */
	__u32 pid;
	__u32 ppid;
	__s32 exit_code; /* task->exit_code: wait(2) status */
	__u64 ts_ns;
	char comm[COMM_BYTES];
};

#endif /* STRAND_H */
