"""Agents declared the Faust way, run on the one consumer runtime (docs/decisions/0022).

    app = App("bitvelocity", settings)
    changes = app.topic("bitvelocity.public.orders", "bitvelocity.public.payments")

    @app.agent(changes)
    async def tally(batch: list[Record]) -> None:
        ...

    await app.run(stop)       # every agent on its own ConsumerRuntime, until stop is set

An agent function receives a batch of plain ``Record``s (up to ``max_records`` or what came
within ``max_wait_ms``). Its consumer group's Kafka offsets are committed only after the
function returned, so delivery is at least once. Unlike Faust, an exception is not an ack:
it ends the worker without committing, and the batch is read again by the next owner (the
pipelines that must not lose data dead-letter bad records themselves). Agents that keep
state with exactly-once outputs (medallion, analytics, lake) use ``ConsumerRuntime`` with
their own offset stores instead.

``agent.feed(records)`` runs the function on records without a broker: the test driver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Message

from config.settings import Settings
from serdes.framing import Headers
from streams.runtime import ConsumerRuntime, ConsumerSpec, StopSignal, origin_of

log = logging.getLogger("bitvelocity.app")


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record as plain data (what an agent function sees)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


def record_of(message: Message) -> Record:
    origin = origin_of(message)
    return Record(
        origin.topic, origin.partition, origin.offset, origin.key, origin.value, origin.headers
    )


@dataclass(frozen=True)
class Topic:
    """One or more topic names an agent subscribes to."""

    names: tuple[str, ...]


AgentFunction = Callable[[list[Record]], Awaitable[None]]


@dataclass
class Agent:
    """An agent function bound to its topic and consumer group."""

    name: str
    topic: Topic
    function: AgentFunction
    group_id: str
    max_records: int = 500
    max_wait_ms: int = 200
    batches: int = field(default=0, init=False)

    async def feed(self, records: Sequence[Record]) -> None:
        """Run the function on ``records`` as one batch, without a broker (tests)."""
        await self.function(list(records))
        self.batches += 1

    async def run(self, bootstrap_servers: str, stop: StopSignal) -> None:
        """Take, call, commit, until ``stop`` is set."""
        spec = ConsumerSpec(
            name=self.name,
            group_id=self.group_id,
            topics=self.topic.names,
            max_records=self.max_records,
            max_wait_ms=self.max_wait_ms,
        )
        async with ConsumerRuntime(bootstrap_servers, spec) as runtime:
            while not stop.is_set():
                batch = await runtime.take(record_of)
                if not batch:
                    continue
                await self.feed(batch)
                await runtime.commit()


class App:
    """A set of agents sharing settings and a group prefix."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.agents: dict[str, Agent] = {}

    def topic(self, *names: str) -> Topic:
        if not names:
            raise ValueError("a topic needs at least one name")
        return Topic(tuple(names))

    def agent(
        self,
        topic: Topic,
        *,
        name: str | None = None,
        max_records: int = 500,
        max_wait_ms: int = 200,
    ) -> Callable[[AgentFunction], Agent]:
        """Declare ``function`` as an agent over ``topic`` (its own consumer group)."""

        def declare(function: AgentFunction) -> Agent:
            agent_name = name or function.__name__
            if agent_name in self.agents:
                raise ValueError(f"agent {agent_name!r} is declared twice in app {self.name}")
            agent = Agent(
                agent_name,
                topic,
                function,
                group_id=f"{self.settings.kafka.consumer_group}-{agent_name}",
                max_records=max_records,
                max_wait_ms=max_wait_ms,
            )
            self.agents[agent_name] = agent
            return agent

        return declare

    async def run(self, stop: asyncio.Event) -> None:
        """Every agent until ``stop`` is set; one failing stops the others (TaskGroup)."""
        bootstrap = self.settings.kafka.bootstrap_servers
        async with asyncio.TaskGroup() as group:
            for agent in self.agents.values():
                log.info(
                    "%s: agent %s over %s", self.name, agent.name, ", ".join(agent.topic.names)
                )
                group.create_task(agent.run(bootstrap, stop))
