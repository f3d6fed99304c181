"""The shape of the contract: ``Value`` (how a kind of value is written),
``Knob`` (one row: annotation, profile field, variable, flag, value,
default, help), ``Role`` (a role's rows) and ``Values`` (parsed knobs).

A value is parsed once into its type (``Value.parse``: text -> T, raising
``ValueError`` that says what is accepted) and formatted once, at the
boundary, into the canonical text the injector writes and the agent reads
back (``Value.format``). Both sides call the same ``parse``, so the injector
accepts exactly what the agent accepts, and an annotation and a profile
field that mean the same thing normalise alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")
_REGISTRY: dict[str, Knob[Any]] = {}


def _knob(key: str) -> Knob[Any]:
    """The row with id ``key`` (unpickling)."""
    import contract.catalogue  # noqa: F401, PLC0415 (every row is defined on import)

    return _REGISTRY[key]


def _text(value: object) -> str:
    return str(value)


@dataclass(frozen=True, eq=False)
class Value(Generic[T]):
    """How one kind of value is written: ``accepted`` says it in words."""

    accepted: str
    parse: Callable[[str], T]
    format: Callable[[T], str] = _text

    def check(self, text: str) -> T:
        """``parse``, with a message that always says what is accepted."""
        try:
            return self.parse(text)
        except ValueError as exc:
            detail = str(exc)
            if self.accepted in detail:
                raise
            raise ValueError(f"{detail}; expected {self.accepted}" if detail else text) from None


@dataclass(frozen=True, eq=False)
class Knob(Generic[T]):
    """One row of the contract.

    * ``field``: the attribute name in the agent's settings and in the
      injector's typed request (``outlier_5xx``);
    * ``env`` / ``flag``: how the agent reads it (``SIDECAR_OUTLIER_5XX``,
      ``--outlier-5xx``); ``None`` for knobs only the injector reads;
    * ``annotation``: the key under ``sidecar.example.io/`` a pod may set
      (``proxy-outlier-5xx``); ``NAME`` / ``<role>`` mark a family of keys;
    * ``profile``: the SidecarProfile ``spec`` path (``proxy.outlier5xx``);
    * ``default``: the agent's default as a user writes it (``None``: unset);
      ``doc_default``: what the docs say when that is not the whole story,
      ``pod_default``: what the annotation table says, when it differs;
    * ``help``: what it means (README, docs/runtime.md, ``--help``);
    * ``example``: a valid value other than the default; every row a pod or a
      profile sets and an agent reads needs one (tests/contract/ feeds it
      through the injector into the agent's loader).

    Rows compare by identity: each ``Knob`` object is one knob, registered
    under its ``id`` (the field, unless two rows share one).
    """

    field: str
    value: Value[T]
    help: str
    env: str | None = None
    flag: str | None = None
    default: str | None = None
    annotation: str | None = None
    profile: str | None = None
    doc_default: str | None = None
    accepted: str | None = None  # overrides value.accepted in the docs
    pod_default: str | None = None  # the annotation table's default, when it differs
    example: str | None = None  # a valid value that is not the default (tests use it)
    id: str = ""  # unique among all rows; default: the field

    def __post_init__(self) -> None:
        key = self.id or self.field
        object.__setattr__(self, "id", key)
        if _REGISTRY.setdefault(key, self) is not self:
            raise ValueError(f"two rows have the id {key!r}; give one of them id=")

    def __repr__(self) -> str:
        return f"Knob({self.id})"

    def __reduce__(self) -> tuple[Callable[[str], Knob[Any]], tuple[str]]:
        """Pickled by id: in another process (the webhook's workers) the row is
        that process's own object, so ``Values`` lookups by identity still work."""
        return _knob, (self.id,)

    @property
    def describes(self) -> str:
        """What is accepted, in words."""
        return self.accepted or self.value.accepted

    @property
    def documented_default(self) -> str:
        if self.doc_default is not None:
            return self.doc_default
        return self.default if self.default is not None else "none"

    @property
    def annotation_default(self) -> str:
        return self.pod_default if self.pod_default is not None else self.documented_default

    def parse(self, text: str) -> T:
        return self.value.check(text)

    def format(self, value: T) -> str:
        return self.value.format(value)

    def parsed_default(self) -> T | None:
        if self.default is None:
            return None
        found = _DEFAULTS.get(self.id, _UNSET)
        if found is _UNSET:
            found = self.value.parse(self.default)
            if type(found) in _IMMUTABLE:  # parsed once, shared: only what cannot change
                _DEFAULTS[self.id] = found
        return cast("T", found)


@dataclass(frozen=True)
class Role:
    """A sidecar role (``sidecar <name>``): its rows, in ``--help`` order.

    ``agent_port``: where its agent serves /healthz, /ready and /metrics;
    ``init``: whether it also runs as an init container (``--init``).
    When a pod gets the role: ``trigger`` is the row whose annotation asks
    for it (``config-source``; a family such as ``secret-NAME``: any of
    them); ``switch`` an annotation that turns it on or off (``proxy``);
    ``default``: asked for when no other role is, or any of its rows is set.
    """

    name: str
    help: str
    agent_port: int
    knobs: tuple[Knob[Any], ...]
    init: bool = False
    trigger: Knob[Any] | None = None
    switch: Knob[bool] | None = None
    default: bool = False

    def __post_init__(self) -> None:
        fields = [k.field for k in self.knobs]
        envs = [k.env for k in self.knobs if k.env]
        flags = [k.flag for k in self.knobs if k.flag]
        for what, names in (("field", fields), ("variable", envs), ("flag", flags)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"role {self.name}: {what} {', '.join(repeated)} repeated")

    def knob(self, name: str) -> Knob[Any]:
        """The row whose field is ``name``."""
        for knob in self.knobs:
            if knob.field == name:
                return knob
        raise KeyError(f"role {self.name} has no knob {name!r}")

    @property
    def annotated(self) -> tuple[Knob[Any], ...]:
        return tuple(k for k in self.knobs if k.annotation)


@dataclass(frozen=True)
class Values:
    """Parsed knobs: ``values.get(KNOB)`` is ``T | None``, typed by the knob."""

    _data: Mapping[Knob[Any], object] = field(default_factory=dict)

    def get(self, knob: Knob[T]) -> T | None:
        return cast("T | None", self._data.get(knob))

    def require(self, knob: Knob[T]) -> T:
        value = self._data.get(knob)
        if value is None:
            raise KeyError(knob.field)
        return cast("T", value)

    def __contains__(self, knob: object) -> bool:
        return knob in self._data

    def __iter__(self) -> Iterator[Knob[Any]]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[Knob[Any], object]]:
        return iter(self._data.items())

    def with_values(self, changes: Mapping[Knob[Any], object]) -> Values:
        """A copy with ``changes`` set (``None`` removes a knob)."""
        data = {**self._data, **changes}
        return Values({k: v for k, v in data.items() if v is not None})

    def over(self, base: Values) -> Values:
        """These values, falling back to ``base`` for knobs not set here."""
        return base.with_values(self._data)

    def only(self, knobs: tuple[Knob[Any], ...]) -> Values:
        wanted = _WANTED.get(knobs)
        if wanted is None:  # a role's rows: a handful of tuples, each made once
            wanted = frozenset(knobs)
            if len(_WANTED) < 64:
                _WANTED[knobs] = wanted
        return Values({k: v for k, v in self._data.items() if k in wanted})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Values) and dict(self._data) == dict(other._data)

    def __hash__(self) -> int:
        return hash(frozenset((k, repr(v)) for k, v in self._data.items()))


def environment(role: Role, values: Values) -> list[tuple[str, str]]:
    """The ``SIDECAR_*`` variables that carry ``values`` to ``role``'s agent,
    in the role's row order; unset knobs are left out (the agent's default)."""
    data = values._data  # one lookup per row: this runs for every container
    env = []
    for knob, name in _variables(role):
        value = data.get(knob)
        if value is not None:
            env.append((name, knob.format(value)))
    return env


_VARIABLES: dict[int, tuple[tuple[Knob[Any], str], ...]] = {}
_DEFAULTS: dict[str, object] = {}  # a row's id -> its default, parsed
_UNSET = object()
_IMMUTABLE = frozenset((str, int, float, bool))
_WANTED: dict[tuple[Knob[Any], ...], frozenset[Knob[Any]]] = {}


def _variables(role: Role) -> tuple[tuple[Knob[Any], str], ...]:
    """``role``'s rows that have a variable, with it (computed once per role)."""
    found = _VARIABLES.get(id(role))
    if found is None:
        found = _VARIABLES[id(role)] = tuple((k, k.env) for k in role.knobs if k.env)
    return found
