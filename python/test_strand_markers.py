"""Tests of the markers client: `python3 -m unittest discover python`."""

import json
import os
import socket
import tempfile
import unittest

from strand_markers import Markers


class MarkersTest(unittest.TestCase):
    def test_step_and_checkpoint_messages(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "markers.sock")
            server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            server.bind(path)
            server.settimeout(5)
            m = Markers(socket_path=path, rank=3, gpu_index=1)
            with m.step(7, flops=2.5e15, tokens=4096, dtype="bf16"):
                pass
            with m.checkpoint(7, kind="restore"):
                pass
            got = [json.loads(server.recv(65536)) for _ in range(4)]
            self.assertEqual([g["event"] for g in got], ["step_begin", "step_end", "checkpoint_begin", "checkpoint_end"])
            self.assertTrue(all(g["v"] == 1 and g["pid"] == os.getpid() and g["rank"] == 3 and g["gpu_index"] == 1 for g in got))
            self.assertEqual((got[1]["step"], got[1]["flops"], got[1]["tokens"], got[1]["dtype"]), (7, 2.5e15, 4096, "bf16"))
            self.assertNotIn("flops", got[0])
            self.assertEqual(got[2]["kind"], "restore")
            self.assertLessEqual(got[0]["ts_ns"], got[1]["ts_ns"])
            self.assertEqual((m.sent, m.dropped), (4, 0))
            server.close()

    def test_no_agent_drops_and_never_raises(self):
        m = Markers(socket_path="/nonexistent/strand/markers.sock")
        with m.step(1, flops=1.0):
            pass
        self.assertEqual((m.sent, m.dropped), (0, 2))


if __name__ == "__main__":
    unittest.main()
