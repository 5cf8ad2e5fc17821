"""System metrics per stage run: CPU, memory, disk, network and (with `pynvml`, where an NVIDIA GPU
exists) GPU utilisation and memory, sampled by MLflow's own monitors and shown in the run's *System
metrics* tab (`system/...`), plus this job's own resident memory.

Why not `SystemMetricsMonitor.start()`: its thread logs without retries and stops for good at the
first "database is locked" from a busy SQLite store, and a short stage ends before its first
publish. Here the samples go through the stage's retried `Run.log_metrics`, and the last partial
interval is published when the stage ends.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)
ENV_INTERVAL = "SOPHIA_SYSTEM_METRICS_INTERVAL"  # seconds between samples; 0 turns monitoring off
DEFAULT_INTERVAL = 10.0
SAMPLES_PER_POINT = 1


class SystemMetrics:
    """Sample every `interval` s in a daemon thread; `stop()` publishes what is left."""

    def __init__(self, run: Any, interval: float | None = None, resumed: bool = False) -> None:
        self.run = run
        self.interval = float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL) if interval is None else interval)
        self.monitors = _monitors() if self.interval > 0 else []
        self.step = _next_step(run) if resumed and self.monitors else 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SystemMetrics:
        if self.monitors:
            self._sample()  # the first point right away: a 5 s stage still gets one
            self._thread = threading.Thread(target=self._loop, name="sophia-system-metrics", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample()
        self._publish()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
            if self.samples >= SAMPLES_PER_POINT:
                self._publish()

    def _sample(self) -> None:
        for m in self.monitors:
            try:
                m.collect_metrics()
            except Exception as exc:  # a flaky sensor must not fail the stage
                log.debug("system metrics: %s failed: %s", type(m).__name__, exc)
        self.samples += 1

    def _publish(self) -> None:
        if not self.samples:
            return
        values: dict[str, float] = {}
        for m in self.monitors:
            try:
                values.update(m.aggregate_metrics())
            except Exception as exc:
                log.debug("system metrics: %s aggregate failed: %s", type(m).__name__, exc)
            m.clear_metrics()
        self.samples = 0
        try:
            self.run.log_metrics({f"system/{k}": v for k, v in values.items()}, step=self.step)
        except Exception as exc:  # the stage's own results matter more than a monitoring point
            log.warning("system metrics not logged: %s", exc)
        self.step += 1


def _next_step(run: Any) -> int:
    """A resumed run continues its system-metric steps instead of overwriting them."""
    try:
        metrics = run.client.get_run(run.run_id).data._metric_objs
    except Exception:
        return 0
    steps = [m.step for m in metrics if m.key.startswith("system/")]
    return max(steps) + 1 if steps else 0


class ProcessMonitor:
    """This job's resident memory, children included (the machine-wide figure hides one job)."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self._values: list[float] = []

    def collect_metrics(self) -> None:
        procs = [self.proc, *self.proc.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except Exception:  # a child that just exited
                continue
        self._values.append(total / 1e6)

    def aggregate_metrics(self) -> dict[str, float]:
        return {"process_rss_megabytes": round(max(self._values), 1)} if self._values else {}

    def clear_metrics(self) -> None:
        self._values = []


def _monitors() -> list[Any]:
    try:
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
        from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    except ImportError as exc:  # psutil missing
        log.warning("system metrics off: %s", exc)
        return []
    monitors: list[Any] = [CPUMonitor(), DiskMonitor(), NetworkMonitor(), ProcessMonitor()]
    gpu = SystemMetricsMonitor._initialize_gpu_monitor(None)  # NVIDIA via pynvml, else AMD, else None
    if gpu is not None:
        monitors.append(gpu)
    return monitors
