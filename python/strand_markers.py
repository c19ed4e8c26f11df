"""Workload markers for strand (standard library only).

Tells the strand agent on this node when each training step begins and
ends, how many model FLOPs it did, and when checkpoints are saved or
restored. With them strand computes MFU (achieved model FLOP/s over the
GPU's peak) instead of guessing, and explains idle time during checkpoints.

    from strand_markers import Markers

    markers = Markers()                       # never raises, never blocks
    for step in range(start, steps):
        with markers.step(step, flops=flops_per_step, tokens=batch_tokens, dtype="bf16"):
            train_step()
        if step % 1000 == 0:
            with markers.checkpoint(step, kind="save"):
                save_checkpoint()

`flops` is the model FLOPs of one step on this rank (for a dense
transformer, about 6 × parameters × tokens per rank; count the FLOPs of the
model, not of recomputation). Messages go to a local datagram socket, one
JSON object each (format: strand-analysis `markers` module). When the agent
is not running, or its socket is full, messages are dropped and counted in
`Markers.dropped`; the training loop is never slowed down.

The socket is `$STRAND_MARKERS_SOCKET`, else `/run/strand/markers.sock`
(the agent's default under systemd).
"""

import contextlib
import json
import os
import socket
import time

__all__ = ["Markers", "DEFAULT_SOCKET"]

DEFAULT_SOCKET = "/run/strand/markers.sock"
VERSION = 1


class Markers:
    """Sends markers to the strand agent. Safe to use from any thread."""

    def __init__(self, socket_path=None, rank=None, gpu_uuid=None, gpu_index=None):
        self.path = socket_path or os.environ.get("STRAND_MARKERS_SOCKET", DEFAULT_SOCKET)
        env_rank = os.environ.get("RANK")
        self.rank = rank if rank is not None else (int(env_rank) if env_rank and env_rank.isdigit() else None)
        self.gpu_uuid = gpu_uuid
        self.gpu_index = gpu_index
        self.sent = 0
        self.dropped = 0
        self._sock = None
        try:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        except OSError:
            self._sock = None

    def _send(self, event, **fields):
        msg = {"v": VERSION, "event": event, "pid": os.getpid(), "ts_ns": time.time_ns()}
        if self.rank is not None:
            msg["rank"] = self.rank
        if self.gpu_uuid is not None:
            msg["gpu_uuid"] = self.gpu_uuid
        if self.gpu_index is not None:
            msg["gpu_index"] = self.gpu_index
        msg.update({k: v for k, v in fields.items() if v is not None})
        if self._sock is None:
            self.dropped += 1
            return False
        try:
            self._sock.sendto(json.dumps(msg, separators=(",", ":")).encode(), self.path)
            self.sent += 1
            return True
        except OSError:  # no agent, socket full, permission: drop, never raise
            self.dropped += 1
            return False

    def step_begin(self, step, flops=None, tokens=None, dtype=None):
        return self._send("step_begin", step=step, flops=flops, tokens=tokens, dtype=dtype)

    def step_end(self, step, flops=None, tokens=None, dtype=None):
        return self._send("step_end", step=step, flops=flops, tokens=tokens, dtype=dtype)

    def checkpoint_begin(self, step=None, kind="save"):
        return self._send("checkpoint_begin", step=step, kind=kind)

    def checkpoint_end(self, step=None, kind="save"):
        return self._send("checkpoint_end", step=step, kind=kind)

    @contextlib.contextmanager
    def step(self, step, flops=None, tokens=None, dtype=None):
        """Marks the body as training step `step` with `flops` model FLOPs."""
        self.step_begin(step)
        try:
            yield
        finally:
            self.step_end(step, flops=flops, tokens=tokens, dtype=dtype)

    @contextlib.contextmanager
    def checkpoint(self, step=None, kind="save"):
        """Marks the body as a checkpoint save (or `kind="restore"`)."""
        self.checkpoint_begin(step, kind)
        try:
            yield
        finally:
            self.checkpoint_end(step, kind)

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
