"""The simulated cluster: deterministic per seed and time, believable, never over budget."""

from __future__ import annotations

from moai_tui.backends.simulator import MIB_PER_GPU, SimulatorBackend
from moai_tui.catalog import load_catalog
from moai_tui.model import JobRequest

T0 = 1_780_000_000.0
CATALOG = load_catalog()


def sim(t: float, seed: int = 0, **kwargs) -> SimulatorBackend:
    return SimulatorBackend(seed=seed, clock=lambda: t, user="me", **kwargs)


def request(flavor_name: str, submitted: float = T0, device: int = 0, job_id: int = 500001):
    flavor = CATALOG.get(flavor_name)
    return JobRequest(
        job_id, 4242, device, "python train.py", flavor.gpus, flavor.nodes, submitted, "me"
    )


def test_same_seed_and_time_same_snapshot():
    jobs = (request("4xLarge.2048GB"),)
    assert sim(T0 + 77.3).sample(jobs) == sim(T0 + 77.3).sample(jobs)
    assert sim(T0 + 77.3).sample(jobs) != sim(T0 + 78.3).sample(jobs)
    assert sim(T0 + 77.3, seed=1).sample(jobs) != sim(T0 + 77.3).sample(jobs)


def test_job_memory_never_exceeds_its_accelerator_over_an_hour():
    for name in ("Small.64GB", "1.5xLarge.768GB", "8xLarge.4096GB"):
        flavor = CATALOG.get(name)
        jobs = (request(name),)
        for t in range(0, 3600, 37):
            snapshot = sim(T0 + t).sample(jobs)
            mine = snapshot.job_on_device(0)
            if mine.waiting:
                continue
            assert len(mine.gpus) == flavor.gpus
            assert len({loc.split(":")[0] for loc in mine.gpus}) == flavor.nodes
            gpus = snapshot.gpu_map()
            assert all(0 <= gpus[loc].mem_used_mib <= MIB_PER_GPU for loc in mine.gpus)
            assert mine.mem_used_mib <= flavor.total_mib


def test_memory_ramps_then_holds_and_utilization_dips():
    jobs = (request("xLarge.512GB"),)
    start = sim(T0).sample(jobs).job_on_device(0).started
    memory, util = [], []
    for age in range(0, 1800, 5):
        snapshot = sim(start + age).sample(jobs)
        gpus = [snapshot.gpu_map()[loc] for loc in snapshot.job_on_device(0).gpus]
        memory.append(sum(g.mem_used_mib for g in gpus))
        util.append(sum(g.util for g in gpus) / len(gpus))
    assert memory[0] < memory[10] and memory[60] > 0.5 * 8 * MIB_PER_GPU
    held = memory[60:]
    assert (max(held) - min(held)) / max(held) < 0.01  # holds, with a little jitter
    busy = util[10:]
    assert max(busy) > 90 and min(busy) < 40  # dips for evaluation and checkpoints
    assert sum(u > 90 for u in busy) > len(busy) * 0.6


def test_temperature_follows_load():
    jobs = (request("xLarge.512GB"),)
    start = sim(T0).sample(jobs).job_on_device(0).started
    hot = sim(start + 200).sample(jobs)
    cold = sim(T0).sample(())
    mine = [hot.gpu_map()[loc] for loc in hot.job_on_device(0).gpus]
    idle = [g for n in cold.nodes for g in n.gpus if g.job_id is None]
    assert min(g.temp_c for g in mine) > max(g.temp_c for g in idle)


def test_gpus_never_shared_and_released_when_job_ends():
    jobs = (request("6xLarge.3072GB"), request("xLarge.512GB", device=1, job_id=500002))
    for t in range(0, 7200, 300):
        snapshot = sim(T0 + t).sample(jobs)
        holders: dict[str, int] = {}
        for job in snapshot.jobs:
            for loc in job.gpus:
                assert loc not in holders, f"{loc} held by {holders[loc]} and {job.job_id}"
                holders[loc] = job.job_id
        for node in snapshot.nodes:
            for gpu in node.gpus:
                assert gpu.job_id == holders.get(gpu.location)
    after = sim(T0 + 7200).sample(())
    assert all(job.user != "me" for job in after.jobs)


def test_job_waits_when_cluster_is_full():
    small = sim(T0, nodes=4, load=1.0)
    waiting = small.sample((request("8xLarge.4096GB"),)).job_on_device(0)
    assert waiting.waiting and waiting.gpus == ()
    busy = sim(T0, nodes=8, load=1.0)
    job = busy.sample((request("4xLarge.2048GB"),)).job_on_device(0)
    assert job.waiting  # every node runs other work; the job waits for nodes to drain
    later = sim(job.started + 1, nodes=8, load=1.0).sample((request("4xLarge.2048GB"),))
    assert not later.job_on_device(0).waiting
