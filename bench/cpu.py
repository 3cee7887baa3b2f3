"""CPU accounting for a timed window, read from /proc (Linux): how many of the machine's cores
were busy, and the CPU seconds that given processes (and their children) used.

A ratio that a goal sets against a second worker means little when the first already keeps the
machine's cores busy; the benches print both figures beside their rates so that this shows.
"""
import bisect
import os
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def machine():
    """(busy, total) jiffies of all cores since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def process_seconds(pid):
    """CPU seconds of a process and its living children (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICK
        children = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(c) for c in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return seconds + sum(process_seconds(child) for child in children)


class Sampler(threading.Thread):
    """Samples the machine and the given processes every `every` seconds until stopped."""

    def __init__(self, pids, every=0.02):
        super().__init__(daemon=True)
        self.pids, self.every = list(pids), every
        self.samples = []  # (time.time(), busy, total, {pid: seconds})
        self.done = threading.Event()
        self.sample()
        self.start()

    def sample(self):
        busy, total = machine()
        self.samples.append((time.time(), busy, total, {pid: process_seconds(pid) for pid in self.pids}))

    def run(self):
        while not self.done.wait(self.every):
            self.sample()

    def stop(self):
        self.done.set()
        self.join()
        self.sample()

    def window(self, start, end):
        """(cores busy on average, CPU seconds of the processes) between two time.time() moments."""
        times = [s[0] for s in self.samples]
        first = self.samples[max(bisect.bisect_right(times, start) - 1, 0)]
        last = self.samples[min(bisect.bisect_left(times, end), len(times) - 1)]
        cores = os.cpu_count() or 1
        busy = (last[1] - first[1]) / max(last[2] - first[2], 1) * cores
        return busy, sum(last[3][pid] - first[3].get(pid, 0.0) for pid in self.pids)
