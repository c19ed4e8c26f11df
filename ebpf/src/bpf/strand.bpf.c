// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0)
/*
 * strand's BPF side: uprobes on NCCL and on CUDA synchronize calls, and
 * programs on process exec/exit. See docs/ebpf.md.
 *
 * Each probed call is one record, written at return (or at thread exit when
 * the call never returned) into one of three ring buffers. Records are
 * submitted without wake-up: user space drains the buffers on a timer.
 *
 * Exec and exit are followed by BTF-enabled raw tracepoints (tp_btf/...,
 * attached by BTF id: no tracefs needed) or, where those cannot load, by the
 * classic sched tracepoints (attached through tracefs). User space loads and
 * attaches each one on its own and uses the first that works.
 *
 * Arguments are read per the calling convention of the target (see ARG7,
 * ARG8, UID_ADDR and INIT_RANK below, and docs/ebpf.md).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "strand.h"

#if defined(__TARGET_ARCH_x86)
/* System V AMD64: integer arguments 1-6 in rdi, rsi, rdx, rcx, r8, r9; the
 * 7th and 8th on the stack at sp+8 and sp+16 at function entry (sp points at
 * the return address). A struct larger than 16 bytes is passed by value on
 * the stack and takes no register: the 128-byte ncclUniqueId of
 * ncclCommInitRank lies at sp+8 and `rank` comes in rdx, the third register. */
static __always_inline __u64 stack_arg(struct pt_regs *ctx, int n)
{
	__u64 v = 0;
	/* n = 0 is the 7th argument. */
	bpf_probe_read_user(&v, sizeof(v), (void *)(PT_REGS_SP(ctx) + 8 + 8 * n));
	return v;
}
#define ARG7(ctx) stack_arg(ctx, 0)
#define ARG8(ctx) stack_arg(ctx, 1)
#define UID_ADDR(ctx) (PT_REGS_SP(ctx) + 8)
#define INIT_RANK(ctx) PT_REGS_PARM3(ctx)
#elif defined(__TARGET_ARCH_arm64)
/* AAPCS64: integer arguments 1-8 in x0-x7. A struct larger than 16 bytes is
 * copied by the caller and passed by reference in the next register: the
 * ncclUniqueId's address is in x2 and `rank` in x3. */
#define ARG7(ctx) PT_REGS_PARM7(ctx)
#define ARG8(ctx) PT_REGS_PARM8(ctx)
#define UID_ADDR(ctx) PT_REGS_PARM3(ctx)
#define INIT_RANK(ctx) PT_REGS_PARM4(ctx)
#else
#error "strand's uprobes know the argument passing of x86-64 and arm64 only"
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Sizes are overridden from user space before load (TracerConfig). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} nccl_rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} cuda_rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} proc_rb SEC(".maps");

/* Records dropped, per source (enum source). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Entries into each probed function, by CALL_* index (nested calls too):
 * shows that a probe fires even when the call makes no record. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_CALLS);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

/* A call in flight on a thread. depth counts nested probed calls
 * (ncclBcast calls ncclBroadcast, ncclCommInitAll calls ncclGetUniqueId and
 * ncclGroupStart): only the outermost one becomes a record. */
struct nccl_state {
	__u32 depth;
	__u32 uid_ok;
	__u64 out;     /* where the callee writes its result (comm*, int*) */
	__u64 uid_out; /* ncclUniqueId* of a nested ncclGetUniqueId */
	__s32 ndev;
	__u32 pad;
	struct nccl_call call;
	__u8 uid[UID_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tid */
	__type(value, struct nccl_state);
} nccl_inflight SEC(".maps");

struct cuda_state {
	__u32 depth;
	__u32 api;
	__u64 enter_ns;
	__u64 handle;
	__u32 flags;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tid */
	__type(value, struct cuda_state);
} cuda_inflight SEC(".maps");

/* All-zero values to initialise map entries from (the BPF stack is small). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nccl_state);
} nccl_zero SEC(".maps");

/* ncclGroupStart/ncclGroupEnd nesting of a thread. */
struct group_state {
	__u32 depth;
	__u32 pad;
	__u64 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tid */
	__type(value, struct group_state);
} groups SEC(".maps");

/* Communicators whose creation was seen. Counting here, at call entry, keeps
 * sequence numbers right even when a ring buffer drops records. */
struct comm_key {
	__u32 tgid;
	__u32 pad;
	__u64 comm;
};

#define COMM_GROWN 1 /* ncclCommGrow ran on it: NCCL's child counter moved without a split */

struct comm_state {
	__u64 coll_seq;    /* next collective sequence number */
	__u64 gen;         /* unique per communicator, keys p2p_seq */
	__u32 split_count; /* splits of this communicator so far */
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct comm_key);
	__type(value, struct comm_state);
} comms SEC(".maps");

/* Point-to-point sequence per (communicator, peer, direction). */
struct p2p_key {
	__u64 gen;
	__s32 peer;
	__u32 dir; /* 0 send, 1 recv */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct p2p_key);
	__type(value, __u64);
} p2p_seq SEC(".maps");

/* Processes that called a probed function or that user space found mapping
 * a GPU library: their exit is reported. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, __u32);
} tracked SEC(".maps");

/* Never used by the programs: referencing every record type here makes
 * libbpf-cargo generate its Rust twin in the skeleton's `types` module. */
struct record_types {
	struct nccl_call nccl_call;
	struct nccl_init nccl_init;
	struct nccl_version nccl_version;
	struct cuda_sync cuda_sync;
	struct proc_exec proc_exec;
	struct proc_exit proc_exit;
};
struct record_types record_types;

/* The agent's own process, set before load: its calls are not traced. */
const volatile __u32 ignore_tgid = 0;

__u64 next_group_id = 1;
__u64 next_comm_gen = 1;

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&lost, &idx);
	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline void count_call(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&calls, &idx);
	if (v)
		*v += 1;
}

static __always_inline void track(__u32 tgid)
{
	__u32 one = 1;
	if (bpf_map_lookup_elem(&tracked, &tgid))
		return;
	if (bpf_map_update_elem(&tracked, &tgid, &one, BPF_NOEXIST) == -7 /* E2BIG */)
		count(SRC_TRACKED);
}

static __always_inline struct comm_state *comm_lookup(__u32 tgid, __u64 comm)
{
	struct comm_key k = { .tgid = tgid, .pad = 0, .comm = comm };
	return bpf_map_lookup_elem(&comms, &k);
}

/* A communicator was created: start its counters. A pointer reused after
 * a destroy gets a new generation, so stale p2p counters are not inherited. */
static __always_inline void comm_created(__u32 tgid, __u64 comm)
{
	struct comm_key k = { .tgid = tgid, .pad = 0, .comm = comm };
	struct comm_state st = {};
	if (!comm)
		return;
	st.gen = __sync_fetch_and_add(&next_comm_gen, 1);
	bpf_map_update_elem(&comms, &k, &st, BPF_ANY);
}

static __always_inline int is_collective(__u32 op)
{
	return op >= OP_ALLREDUCE && op <= OP_ALLTOALL;
}

static __always_inline void read_args(struct pt_regs *ctx, struct nccl_state *s, __u32 op)
{
	struct nccl_call *c = &s->call;
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);
	__u64 a4 = PT_REGS_PARM4(ctx), a5 = PT_REGS_PARM5(ctx), a6 = PT_REGS_PARM6(ctx);

	c->datatype = -1;
	c->redop = -1;
	c->root_peer = -1;
	switch (op) {
	case OP_ALLREDUCE: /* (send, recv, count, dtype, op, comm, stream) */
	case OP_REDUCESCATTER: /* (send, recv, recvcount, dtype, op, comm, stream) */
		c->count = a3, c->datatype = a4, c->redop = a5, c->comm = a6;
		c->stream = ARG7(ctx);
		break;
	case OP_BROADCAST: /* (send, recv, count, dtype, root, comm, stream) */
		c->count = a3, c->datatype = a4, c->root_peer = a5, c->comm = a6;
		c->stream = ARG7(ctx);
		break;
	case OP_BCAST: /* (buff, count, dtype, root, comm, stream) */
		c->count = a2, c->datatype = a3, c->root_peer = a4, c->comm = a5, c->stream = a6;
		break;
	case OP_REDUCE: /* (send, recv, count, dtype, op, root, comm, stream) */
		c->count = a3, c->datatype = a4, c->redop = a5, c->root_peer = a6;
		c->comm = ARG7(ctx);
		c->stream = ARG8(ctx);
		break;
	case OP_ALLGATHER: /* (send, recv, sendcount, dtype, comm, stream) */
	case OP_ALLTOALL:  /* (send, recv, count, dtype, comm, stream) */
		c->count = a3, c->datatype = a4, c->comm = a5, c->stream = a6;
		break;
	case OP_SEND: /* (send, count, dtype, peer, comm, stream) */
	case OP_RECV: /* (recv, count, dtype, peer, comm, stream) */
		c->count = a2, c->datatype = a3, c->root_peer = a4, c->comm = a5, c->stream = a6;
		break;
	case OP_INIT_RANK: /* (comm*, nranks, ncclUniqueId by value, rank) */
	case OP_INIT_RANK_CONFIG: /* (comm*, nranks, ncclUniqueId, rank, config*) */
		s->out = a1;
		s->ndev = a2;
		c->root_peer = INIT_RANK(ctx);
		if (bpf_probe_read_user(s->uid, UID_BYTES, (void *)UID_ADDR(ctx)) == 0)
			s->uid_ok = 1;
		break;
	case OP_INIT_ALL: /* (comm* array, ndev, devlist) */
		s->out = a1;
		s->ndev = a2;
		break;
	case OP_SPLIT: /* (comm, color, key, newcomm*, config*) */
		c->comm = a1, c->color = a2, c->key = a3;
		s->out = a4;
		break;
	case OP_DESTROY: /* (comm) */
	case OP_ABORT:
	case OP_GROW: /* (comm, nranks, uniqueId*, rank, newcomm*, config*) */
		c->comm = a1;
		break;
	case OP_GET_VERSION: /* (int*) */
		s->out = a1;
		break;
	}
}

static __always_inline int nccl_enter(struct pt_regs *ctx, __u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id, zero = 0;
	struct nccl_state *s, *z;
	struct group_state *g;
	struct comm_state *cs;

	if (tgid == ignore_tgid)
		return 0;
	count_call(op);
	track(tgid);
	s = bpf_map_lookup_elem(&nccl_inflight, &tid);
	if (s && s->depth > 0) {
		/* Nested in another probed call: only remember where a nested
		 * ncclGetUniqueId writes the id that ncclCommInitAll uses. */
		if (s->depth < 64)
			s->depth++;
		if (op == OP_GET_UNIQUE_ID && s->call.op == OP_INIT_ALL)
			s->uid_out = PT_REGS_PARM1(ctx);
		return 0;
	}
	z = bpf_map_lookup_elem(&nccl_zero, &zero);
	if (!z)
		return 0;
	if (bpf_map_update_elem(&nccl_inflight, &tid, z, BPF_ANY)) {
		count(SRC_NCCL_STATE);
		return 0;
	}
	s = bpf_map_lookup_elem(&nccl_inflight, &tid);
	if (!s)
		return 0;
	s->depth = 1;
	s->call.kind = EV_NCCL_CALL;
	s->call.op = op;
	s->call.pid = tgid;
	s->call.tid = tid;
	read_args(ctx, s, op);

	g = bpf_map_lookup_elem(&groups, &tid);
	if (op == OP_GROUP_START) {
		if (!g || g->depth == 0) {
			struct group_state ng = { .depth = 0, .id = __sync_fetch_and_add(&next_group_id, 1) };
			bpf_map_update_elem(&groups, &tid, &ng, BPF_ANY);
			g = bpf_map_lookup_elem(&groups, &tid);
		}
		if (g) {
			g->depth++;
			s->call.group_id = g->id;
		}
	} else if (g && g->depth > 0) {
		s->call.group_id = g->id;
		if (op == OP_GROUP_END && --g->depth == 0)
			bpf_map_delete_elem(&groups, &tid);
	}

	if (is_collective(op) || op == OP_SEND || op == OP_RECV || op == OP_SPLIT || op == OP_GROW) {
		cs = comm_lookup(tgid, s->call.comm);
		if (cs) {
			if (is_collective(op)) {
				s->call.seq = __sync_fetch_and_add(&cs->coll_seq, 1);
				s->call.flags |= F_COMM_KNOWN;
			} else if (op == OP_SPLIT) {
				/* NCCL increments the parent's counter for every split,
				 * whatever the color; ncclCommGrow (2.29+) moves it too. */
				__u32 n = __sync_add_and_fetch(&cs->split_count, 1);
				if (!(cs->flags & COMM_GROWN)) {
					s->call.split_count = n;
					s->call.flags |= F_SPLIT_COUNT;
				}
			} else if (op == OP_GROW) {
				cs->flags |= COMM_GROWN;
			} else {
				struct p2p_key pk = { .gen = cs->gen, .peer = s->call.root_peer,
						      .dir = op == OP_RECV };
				__u64 *v = bpf_map_lookup_elem(&p2p_seq, &pk);
				if (!v) {
					__u64 first = 0;
					bpf_map_update_elem(&p2p_seq, &pk, &first, BPF_NOEXIST);
					v = bpf_map_lookup_elem(&p2p_seq, &pk);
				}
				if (v) {
					s->call.seq = __sync_fetch_and_add(v, 1);
					s->call.flags |= F_COMM_KNOWN;
				}
			}
		}
	}
	/* Last, so that the recorded time excludes the probe's own work. */
	s->call.enter_ns = bpf_ktime_get_ns();
	return 0;
}

/* Writes the record of an outermost call; exit_ns = 0 marks it unfinished. */
static __always_inline void nccl_emit(struct nccl_state *s, __u64 exit_ns, __s32 ret)
{
	__u32 op = s->call.op;
	__u32 unfinished = exit_ns ? 0 : F_UNFINISHED;

	if (op == OP_GET_UNIQUE_ID || op == OP_GROW)
		return;
	if (op == OP_GET_VERSION) {
		struct nccl_version *v;
		__s32 version = 0;
		if (unfinished || ret != 0 ||
		    bpf_probe_read_user(&version, sizeof(version), (void *)s->out))
			return;
		v = bpf_ringbuf_reserve(&nccl_rb, sizeof(*v), 0);
		if (!v) {
			count(SRC_NCCL);
			return;
		}
		v->kind = EV_NCCL_VERSION;
		v->pid = s->call.pid;
		v->version = version;
		v->pad = 0;
		bpf_ringbuf_submit(v, BPF_RB_NO_WAKEUP);
		return;
	}
	if (op == OP_INIT_RANK || op == OP_INIT_RANK_CONFIG || op == OP_INIT_ALL) {
		struct nccl_init *e = bpf_ringbuf_reserve(&nccl_rb, sizeof(*e), 0);
		__u32 n = 0;
		if (!e) {
			count(SRC_NCCL);
			return;
		}
		e->kind = EV_NCCL_INIT;
		e->op = op;
		e->pid = s->call.pid;
		e->tid = s->call.tid;
		e->enter_ns = s->call.enter_ns;
		e->exit_ns = exit_ns;
		e->group_id = s->call.group_id;
		e->nranks = s->ndev;
		e->rank = op == OP_INIT_ALL ? -1 : s->call.root_peer;
		e->ret = ret;
		e->flags = unfinished | (s->uid_ok ? F_UID : 0);
		e->pad = 0;
		__builtin_memcpy(e->uid, s->uid, UID_BYTES);
		/* ncclSuccess or ncclInProgress (non-blocking init): *comm is set. */
		if (!unfinished && (ret == 0 || ret == 7) && s->out) {
			n = op == OP_INIT_ALL ? s->ndev : 1;
			if (n > MAX_INIT_ALL)
				n = MAX_INIT_ALL;
		}
		for (__u32 i = 0; i < MAX_INIT_ALL; i++) {
			__u64 comm = 0;
			if (i < n && bpf_probe_read_user(&comm, sizeof(comm), (void *)(s->out + 8 * i)) == 0)
				comm_created(e->pid, comm);
			e->comms[i] = comm;
		}
		e->ncomms = n;
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
		return;
	}

	struct nccl_call *e = bpf_ringbuf_reserve(&nccl_rb, sizeof(*e), 0);
	if (!e) {
		count(SRC_NCCL);
		return;
	}
	__builtin_memcpy(e, &s->call, sizeof(*e));
	e->exit_ns = exit_ns;
	e->ret = ret;
	e->flags |= unfinished;
	if (op == OP_SPLIT && !unfinished && (ret == 0 || ret == 7) && s->out) {
		__u64 child = 0;
		if (bpf_probe_read_user(&child, sizeof(child), (void *)s->out) == 0) {
			e->new_comm = child;
			comm_created(e->pid, child); /* NULL for NCCL_SPLIT_NOCOLOR: skipped */
		}
	}
	if ((op == OP_DESTROY || op == OP_ABORT) && !unfinished) {
		struct comm_key k = { .tgid = e->pid, .pad = 0, .comm = e->comm };
		bpf_map_delete_elem(&comms, &k);
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

static __always_inline int nccl_exit(struct pt_regs *ctx, __u32 op)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct nccl_state *s = bpf_map_lookup_elem(&nccl_inflight, &tid);

	if (!s || s->depth == 0)
		return 0;
	if (s->depth > 1) {
		if (op == OP_GET_UNIQUE_ID && s->uid_out && PT_REGS_RC(ctx) == 0) {
			if (bpf_probe_read_user(s->uid, UID_BYTES, (void *)s->uid_out) == 0)
				s->uid_ok = 1;
			s->uid_out = 0;
		}
		s->depth--;
		return 0;
	}
	if (s->call.op == op)
		nccl_emit(s, now, (__s32)PT_REGS_RC(ctx));
	bpf_map_delete_elem(&nccl_inflight, &tid);
	return 0;
}

static __always_inline int cuda_enter(struct pt_regs *ctx, __u32 api, int has_handle)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct cuda_state *s, st = {};

	if (id >> 32 == ignore_tgid)
		return 0;
	count_call(CALL_CUDA + api);
	track(id >> 32);
	s = bpf_map_lookup_elem(&cuda_inflight, &tid);
	if (s && s->depth > 0) {
		/* cudaStreamSynchronize reaching cuStreamSynchronize: report the outer call. */
		if (s->depth < 64)
			s->depth++;
		return 0;
	}
	st.depth = 1;
	st.api = api;
	if (has_handle) {
		st.handle = PT_REGS_PARM1(ctx);
		st.flags = F_HANDLE;
	}
	st.enter_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&cuda_inflight, &tid, &st, BPF_ANY))
		count(SRC_CUDA_STATE);
	return 0;
}

static __always_inline void cuda_emit(struct cuda_state *s, __u64 pid_tgid, __u64 exit_ns, __s32 ret)
{
	struct cuda_sync *e = bpf_ringbuf_reserve(&cuda_rb, sizeof(*e), 0);
	if (!e) {
		count(SRC_CUDA);
		return;
	}
	e->kind = EV_CUDA_SYNC;
	e->api = s->api;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->enter_ns = s->enter_ns;
	e->exit_ns = exit_ns;
	e->handle = s->handle;
	e->ret = ret;
	e->flags = s->flags | (exit_ns ? 0 : F_UNFINISHED);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

static __always_inline int cuda_exit(struct pt_regs *ctx, __u32 api)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct cuda_state *s = bpf_map_lookup_elem(&cuda_inflight, &tid);

	if (!s || s->depth == 0)
		return 0;
	if (s->depth > 1) {
		s->depth--;
		return 0;
	}
	if (s->api == api)
		cuda_emit(s, id, now, (__s32)PT_REGS_RC(ctx));
	bpf_map_delete_elem(&cuda_inflight, &tid);
	return 0;
}

/* One entry and one return program per function, so that no BPF cookie
 * (kernel 5.15+) is needed to tell them apart. */
#define NCCL_PROBE(fn, op)                                                        \
	SEC("uprobe") int BPF_KPROBE(enter_##fn) { return nccl_enter(ctx, op); } \
	SEC("uretprobe") int BPF_KRETPROBE(exit_##fn) { return nccl_exit(ctx, op); }

#define CUDA_PROBE(fn, api, has_handle)                                                       \
	SEC("uprobe") int BPF_KPROBE(enter_##fn) { return cuda_enter(ctx, api, has_handle); } \
	SEC("uretprobe") int BPF_KRETPROBE(exit_##fn) { return cuda_exit(ctx, api); }

NCCL_PROBE(ncclAllReduce, OP_ALLREDUCE)
NCCL_PROBE(ncclBroadcast, OP_BROADCAST)
NCCL_PROBE(ncclBcast, OP_BCAST)
NCCL_PROBE(ncclReduce, OP_REDUCE)
NCCL_PROBE(ncclAllGather, OP_ALLGATHER)
NCCL_PROBE(ncclReduceScatter, OP_REDUCESCATTER)
NCCL_PROBE(ncclAlltoAll, OP_ALLTOALL)
NCCL_PROBE(ncclSend, OP_SEND)
NCCL_PROBE(ncclRecv, OP_RECV)
NCCL_PROBE(ncclGroupStart, OP_GROUP_START)
NCCL_PROBE(ncclGroupEnd, OP_GROUP_END)
NCCL_PROBE(ncclCommInitRank, OP_INIT_RANK)
NCCL_PROBE(ncclCommInitRankConfig, OP_INIT_RANK_CONFIG)
NCCL_PROBE(ncclCommInitAll, OP_INIT_ALL)
NCCL_PROBE(ncclCommSplit, OP_SPLIT)
NCCL_PROBE(ncclCommDestroy, OP_DESTROY)
NCCL_PROBE(ncclCommAbort, OP_ABORT)
NCCL_PROBE(ncclGetUniqueId, OP_GET_UNIQUE_ID)
NCCL_PROBE(ncclGetVersion, OP_GET_VERSION)
NCCL_PROBE(ncclCommGrow, OP_GROW)

CUDA_PROBE(cudaStreamSynchronize, API_CUDA_STREAM_SYNC, 1)
CUDA_PROBE(cudaDeviceSynchronize, API_CUDA_DEVICE_SYNC, 0)
CUDA_PROBE(cudaEventSynchronize, API_CUDA_EVENT_SYNC, 1)
CUDA_PROBE(cuStreamSynchronize, API_CU_STREAM_SYNC, 1)
CUDA_PROBE(cuCtxSynchronize, API_CU_CTX_SYNC, 0)
CUDA_PROBE(cuEventSynchronize, API_CU_EVENT_SYNC, 1)

/* Kernel types read with CO-RE (needs kernel BTF); only these fields. */
typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	struct task_struct *real_parent;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

struct linux_binprm {
	const char *filename;
} __attribute__((preserve_access_index));

/* A process image was replaced: one exec record. `filename` is a kernel
 * string (the path given to execve). */
static __always_inline void handle_exec(const char *filename)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct proc_exec *e;

	/* A new program: whether it uses a GPU library is decided afresh. */
	bpf_map_delete_elem(&tracked, &tgid);
	e = bpf_ringbuf_reserve(&proc_rb, sizeof(*e), 0);
	if (!e) {
		count(SRC_PROC);
		return;
	}
	e->kind = EV_EXEC;
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->pad = 0;
	e->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* Runs for every exiting thread: flushes its unfinished calls, and on the
 * last thread of a tracked process reports the exit status. */
static __always_inline void handle_exit(void)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct nccl_state *ns;
	struct cuda_state *cs;
	struct proc_exit *e;

	ns = bpf_map_lookup_elem(&nccl_inflight, &tid);
	if (ns) {
		if (ns->depth > 0)
			nccl_emit(ns, 0, 0);
		bpf_map_delete_elem(&nccl_inflight, &tid);
	}
	cs = bpf_map_lookup_elem(&cuda_inflight, &tid);
	if (cs) {
		if (cs->depth > 0)
			cuda_emit(cs, id, 0, 0);
		bpf_map_delete_elem(&cuda_inflight, &tid);
	}
	bpf_map_delete_elem(&groups, &tid);

	/* do_exit() decrements signal->live before this tracepoint. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return;
	if (!bpf_map_lookup_elem(&tracked, &tgid))
		return;
	bpf_map_delete_elem(&tracked, &tgid);
	e = bpf_ringbuf_reserve(&proc_rb, sizeof(*e), 0);
	if (!e) {
		count(SRC_PROC);
		return;
	}
	e->kind = EV_EXIT;
	e->pid = tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->exit_code = BPF_CORE_READ(task, exit_code);
	e->ts_ns = now;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* BTF-enabled raw tracepoints: attached by BTF id, without tracefs (5.5+).
 * Arguments as in include/trace/events/sched.h. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec_btf, struct task_struct *p, int old_pid, struct linux_binprm *bprm)
{
	handle_exec(BPF_CORE_READ(bprm, filename));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit_btf, struct task_struct *p)
{
	handle_exit();
	return 0;
}

/* Classic tracepoints: attached through tracefs (its events/.../id file).
 * Layout from /sys/kernel/tracing/events/sched/sched_process_exec/format,
 * stable since the tracepoint was added (3.4). */
struct exec_args {
	__u64 common;
	__u32 filename_loc; /* __data_loc: offset in the low 16 bits */
	__s32 pid;
	__s32 old_pid;
};

SEC("tracepoint/sched/sched_process_exec")
int on_exec_tp(struct exec_args *ctx)
{
	handle_exec((const char *)ctx + (ctx->filename_loc & 0xFFFF));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int on_exit_tp(void *ctx)
{
	handle_exit();
	return 0;
}
