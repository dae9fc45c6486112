"""The meta strategy (paper 4.3, SPEC §3): a genetic algorithm that produces the training labels.

`PolicyModel` is the paper's name for it. One run: initialise a population (part of it seeded from the
greedy allocation) -> fitness by Eq. 1 through the shared kernel, the whole population in one call ->
tournament selection -> two-point crossover -> mutation -> local search of single-task moves on the
children (a memetic GA) -> elitist replacement, until the generation budget, the time budget or a stall.

Why vectorised numpy operators instead of DEAP's toolbox: DEAP's `selTournament`, `cxTwoPoint` and
`mutUniformInt` act on one Python list per individual; at 1000 tasks and a population of 24 the
conversion to and from those lists costs more than the kernel's fitness call for the whole population,
so the same three operators are written here over the (P, n) int16 population array (`docs/solvers.md`
has the measurement). DEAP's `tools.Logbook` keeps the per-generation record.

The run never returns anything worse than its greedy seed: the greedy allocation is in the initial
population, elitism keeps the best, and the final answer is re-checked against greedy with the kernel.

Honest budgets: every compiled function a run calls is compiled (or loaded from Numba's cache) by
`warm_up()` before the clock starts, so a cold cache does not eat a time budget; a run whose time budget
ended before the first generation says so in `GAResult.budget_note` (the allocation JSON's `budget_note`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from deap import tools

from edgepoc.errors import InputError
from edgepoc.game.instance import Instance, warm_up_instance
from edgepoc.game.kernel import greedy_assignment, simulate, simulate_population
from edgepoc.game.validate import ASSIGNMENT_DTYPE
from edgepoc.solvers.localsearch import local_search_inplace
from edgepoc.solvers.registry import SolveOptions

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

DEFAULT_GENERATIONS = 20  # when neither a generation nor a time budget is given (about 4 s at 1000 tasks)


@dataclass
class GAConfig:
    """Settings of one GA run; every field can be given as `--param name=value`."""

    population: int = 24
    generations: int | None = None  # None: DEFAULT_GENERATIONS unless a time budget is given
    stall: int | None = 200  # stop after this many generations without a better best (None: never)
    elite: int = 2
    tournament: int = 3
    crossover: float = 0.9  # probability a pair of parents is crossed (else copied)
    mutation: float | None = None  # per-task probability of a new provider (None: 2 / n)
    greedy_share: float = 1.0  # share of the initial population made of (perturbed) greedy copies, the rest random
    greedy_perturb: float = 0.05  # per-task perturbation of those copies
    local_search: float = 1.0  # probability a child is improved by single-task local search
    local_search_sweeps: int = 50  # cap on sweeps per local search (it usually stops far sooner)
    clock: str = "wall"  # what the time budget counts: "wall" seconds, or "cpu" seconds of this thread
    swap_window: int = 8  # local search also swaps the providers of two tasks at most this many apart (0: off)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "GAConfig":
        """Build from `SolveOptions.params`, rejecting unknown names and bad values with an `InputError`."""
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise InputError(f"ga: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(names)}")
        cfg = cls(**params)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def bad(name: str, rule: str) -> InputError:
            return InputError(f"ga: parameter {name} must be {rule}, got {getattr(self, name)!r}")

        if isinstance(self.swap_window, bool) or not isinstance(self.swap_window, int) or self.swap_window < 0:
            raise bad("swap_window", "a non-negative integer")
        for name in ("population", "elite", "tournament", "local_search_sweeps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "elite" else 1):
                raise bad(name, "a positive integer")
        for name in ("generations", "stall"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise bad(name, "a non-negative integer or null")
        for name in ("crossover", "greedy_share", "greedy_perturb", "local_search"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise bad(name, "a number in [0, 1]")
        if self.mutation is not None and (isinstance(self.mutation, bool) or not isinstance(self.mutation, (int, float))
                                          or not 0.0 <= self.mutation <= 1.0):
            raise bad("mutation", "a number in [0, 1] or null")
        if self.clock not in ("wall", "cpu"):
            raise bad("clock", '"wall" or "cpu"')
        if self.population < 2:
            raise bad("population", "at least 2")
        if self.elite >= self.population:
            raise bad("elite", f"smaller than the population ({self.population})")


@dataclass
class GAResult:
    assignment: np.ndarray  # (n,) int64
    total_latency: float
    greedy_latency: float
    generations: int
    evaluations: int  # allocations priced by the kernel's population call
    seconds: float
    stop_reason: str  # "generations", "seconds", "stall"
    history: list[float] = field(default_factory=list)  # best total delay after each generation
    budget_note: str | None = None  # set when the time budget could not be used as asked (0 generations)


_WARM = False


def warm_up() -> None:
    """Compile (or load from Numba's cache) everything a GA run calls, once per process, outside any clock:
    a run on a 4-task instance with the same array types as a real one."""
    global _WARM
    if _WARM:
        return
    _WARM = True
    inst = warm_up_instance()
    PolicyModel(GAConfig(population=4, elite=1, generations=1), seed=0).solve(inst, np.zeros(2))


class PolicyModel:
    """The paper's meta strategy: a memetic GA over allocations whose fitness is Eq. 1."""

    def __init__(self, config: GAConfig | None = None, seed: int = 0):
        self.config = config or GAConfig()
        self.config.validate()
        self.seed = seed

    # -- operators over the (P, n) int16 population -------------------------------------------------

    @staticmethod
    def _tournament(rng: np.random.Generator, fitness: np.ndarray, count: int, size: int) -> np.ndarray:
        """Indices of `count` winners of `size`-way tournaments (lower delay wins)."""
        entrants = rng.integers(0, fitness.shape[0], size=(count, size))
        return entrants[np.arange(count), np.argmin(fitness[entrants], axis=1)]

    @staticmethod
    def _two_point(rng: np.random.Generator, mothers: np.ndarray, fathers: np.ndarray, rate: float) -> np.ndarray:
        """Children take the father's providers between two cut points: keeps runs of consecutive
        tasks together, and consecutive tasks are what share a queue."""
        count, n = mothers.shape
        cuts = np.sort(rng.integers(0, n + 1, size=(count, 2)), axis=1)
        pos = np.arange(n)
        from_father = (pos >= cuts[:, :1]) & (pos < cuts[:, 1:]) & (rng.random((count, 1)) < rate)
        return np.where(from_father, fathers, mothers)

    @staticmethod
    def _mutate(rng: np.random.Generator, pop: np.ndarray, rate: float, k: int) -> None:
        """Each task moves to a different provider with probability `rate` (in place)."""
        hit = rng.random(pop.shape) < rate
        shift = (rng.integers(1, k, size=pop.shape, dtype=ASSIGNMENT_DTYPE) if k > 1
                 else np.zeros(pop.shape, ASSIGNMENT_DTYPE))
        pop[hit] = (pop[hit] + shift[hit]) % k

    # -- the run ------------------------------------------------------------------------------------

    def solve(self, instance: Instance, free_times: ArrayLike | None = None, seconds: float | None = None,
              progress: Callable[[float, float], None] | None = None) -> GAResult:
        """Run the GA on `instance` (from queue state `free_times`) within `seconds` and the generation budget;
        `progress(done, of)` is told populations improved (the initial one, then one per generation; fractions
        while one is), or seconds of the budget spent."""
        cfg = self.config
        clock = time.perf_counter if cfg.clock == "wall" else time.thread_time
        warm_up()  # compiling is not the run's time
        t0 = clock()
        n, k = instance.n_tasks, instance.n_providers
        free0 = np.zeros(k) if free_times is None else np.asarray(free_times, dtype=np.float64)
        greedy_x, greedy_total = greedy_assignment(instance, free0)
        if seconds is not None and not seconds > 0:
            raise InputError(f"ga: seconds must be > 0, got {seconds}")
        generations = cfg.generations
        if generations is None:
            generations = DEFAULT_GENERATIONS if seconds is None else 2**62
        if n == 0 or k == 1:
            return GAResult(greedy_x, greedy_total, greedy_total, 0, 0, clock() - t0, "generations")
        deadline = t0 + seconds if seconds is not None else np.inf
        rng = np.random.default_rng(self.seed)
        mutation = cfg.mutation if cfg.mutation is not None else min(1.0, 2.0 / n)
        ls_rng = np.random.default_rng([self.seed, 1])

        # a descent stops at the deadline too (one on a large overloaded instance can take seconds); the
        # compiled check reads the wall clock, so with clock="cpu" only the generation loop checks
        ls_deadline = deadline if cfg.clock == "wall" else np.inf

        def report(units: float) -> None:
            """Progress in units of populations improved: the initial one, then one per generation."""
            if progress is not None:
                if seconds is not None:
                    progress(min(clock() - t0, seconds), seconds)
                else:
                    progress(min(units, generations + 1), generations + 1)

        def improve(pop: np.ndarray, generation: int, always_first: bool = False) -> None:
            for p in range(pop.shape[0]):
                if (always_first and p == 0) or ls_rng.random() < cfg.local_search:
                    local_search_inplace(instance, pop[p], free0, cfg.local_search_sweeps,
                                         start=int(ls_rng.integers(0, n)), swap_window=cfg.swap_window,
                                         deadline=ls_deadline)
                # a descent on a long backlog (a burst of arrivals) takes seconds: say how far it is
                report(generation + (p + 1) / pop.shape[0])
                if clock() > deadline:
                    break

        # initial population: greedy, perturbed greedy copies, uniformly random allocations
        pop = rng.integers(0, k, size=(cfg.population, n), dtype=ASSIGNMENT_DTYPE)
        n_seeded = max(1, int(round(cfg.greedy_share * cfg.population)))
        pop[:n_seeded] = greedy_x.astype(ASSIGNMENT_DTYPE)
        self._mutate(rng, pop[1:n_seeded], cfg.greedy_perturb, k)
        improve(pop, 0, always_first=True)
        fitness = simulate_population(instance, pop, free0, checked=False)
        evaluations = pop.shape[0]

        logbook = tools.Logbook()
        best = float(fitness.min())
        history = [best]
        logbook.record(gen=0, best=best, mean=float(fitness.mean()), evals=evaluations)
        gen, since_better, reason = 0, 0, "generations"
        n_children = cfg.population - cfg.elite
        while True:
            if gen >= generations:
                reason = "generations"
                break
            if clock() >= deadline:
                reason = "seconds"
                break
            if cfg.stall is not None and since_better >= cfg.stall:
                reason = "stall"
                break
            gen += 1
            parents = self._tournament(rng, fitness, 2 * n_children, cfg.tournament)
            children = self._two_point(rng, pop[parents[:n_children]], pop[parents[n_children:]], cfg.crossover)
            self._mutate(rng, children, mutation, k)
            improve(children, gen)
            child_fit = simulate_population(instance, children, free0, checked=False)
            evaluations += n_children
            elite = np.argsort(fitness, kind="stable")[: cfg.elite]
            pop = np.concatenate([pop[elite], children])
            fitness = np.concatenate([fitness[elite], child_fit])
            gen_best = float(fitness.min())
            if gen_best < best:
                best, since_better = gen_best, 0
            else:
                since_better += 1
            history.append(best)
            logbook.record(gen=gen, best=best, mean=float(fitness.mean()), evals=n_children)
            report(gen + 1)

        j = int(np.argmin(fitness))
        x = pop[j].astype(np.int64)
        total = simulate(instance, x, free0, checked=False)
        if not total <= greedy_total:  # cannot happen with elitism; kept as the contract's guard
            x, total = greedy_x, greedy_total
        self.logbook = logbook
        note = None
        if reason == "seconds" and gen == 0:
            note = (f"ga: the time budget of {seconds:g} s ended before the first generation; the answer is the "
                    "best of the initial population (greedy, locally improved as far as the time allowed), "
                    "not a GA result (give more --seconds)")
        return GAResult(x, total, greedy_total, gen, evaluations, clock() - t0, reason, history, note)


def solve_ga(instance: Instance, options: SolveOptions) -> tuple[np.ndarray, dict[str, Any]]:
    """Registry entry point: `options.seconds` is the time budget, `options.params` the `GAConfig` fields."""
    config = GAConfig.from_params(dict(options.params))
    result = PolicyModel(config, seed=options.seed).solve(instance, options.free_times, options.seconds,
                                                          progress=options.progress)
    extra = {
        "greedy_latency": result.greedy_latency,
        "generations": result.generations,
        "evaluations": result.evaluations,
        "stop_reason": result.stop_reason,
        "seed": options.seed,
        "settings": asdict(config),
    }
    if result.budget_note:
        extra["budget_note"] = result.budget_note
    return result.assignment, extra
