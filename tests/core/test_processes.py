import os
import subprocess
import sys

from tritium.processes import process_alive


def test_a_running_process_is_alive_and_a_reaped_one_is_not():
    assert process_alive(os.getpid())
    assert process_alive(1)  # init always exists
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)
