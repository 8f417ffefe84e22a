"""
Callback load that keeps score, and the audit of what reached each topic.

Every event is unique (its own message id), so each one must come out of its
processor exactly once. The load posts bodies of a few events to the ingress
and, like Bandwidth, posts a body again until it gets a 200. The ``Ledger``
records every answer; ``Tally`` counts the records of a topic by event id;
``audit`` compares the two.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from message_events.settings import (
    DELIVERY_TOPIC,
    EVENTS_TOPIC,
    INBOUND_TOPIC,
    MMS_TOPIC,
    Settings,
)
from schemas.events import CallbackEvent
from schemas.identity import event_identity

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
CALLBACK_PATH = "/callbacks/messaging"

# kind -> (template fixture, output topic without prefix)
KINDS: dict[str, tuple[str, str]] = {
    "inbound": ("incoming_single_sms.json", INBOUND_TOPIC),
    "delivery": ("message_delivered_sms.json", DELIVERY_TOPIC),
    "mms": ("message_sending_mms.json", MMS_TOPIC),
}


@dataclasses.dataclass(frozen=True)
class Event:
    """One unique callback item and the output topic it must reach."""

    event_id: str
    kind: str
    message_id: str
    raw: bytes


class EventFactory:
    """Unique events built from the shared fixtures, one message id each."""

    def __init__(self, kinds: Iterable[str] = tuple(KINDS)) -> None:
        self.kinds = tuple(kinds)
        self._templates = {
            kind: json.loads((FIXTURES / KINDS[kind][0]).read_text())[0]
            for kind in self.kinds
        }
        self._run = uuid.uuid4().hex[:6]
        self._counter = itertools.count()
        self._cycle = itertools.cycle(self.kinds)

    def make(self, kind: str | None = None) -> Event:
        """A new event of ``kind`` (the kinds take turns by default)."""
        kind = kind or next(self._cycle)
        item = json.loads(json.dumps(self._templates[kind]))
        # 13 digits and 16 lowercase letters or digits, like Bandwidth's ids.
        message_id = f"1772470000000{self._run}{next(self._counter):010d}"
        item["message"]["id"] = message_id
        raw = orjson.dumps(item)
        event = CallbackEvent.model_validate_json(raw)

        return Event(event_identity(event).event_id, kind, message_id, raw)

    def batch(self, size: int) -> list[Event]:
        """``size`` new events."""
        return [self.make() for _ in range(size)]


def body_of(events: Iterable[Event]) -> bytes:
    """A callback body: the events' JSON texts as one array."""
    return b"[" + b",".join(e.raw for e in events) + b"]"


CUTS = ("content-length", "complete-json-prefix", "chunked")


def half_request(
    port: int, body: bytes, headers: Mapping[str, str], cut: str = "content-length"
) -> bytes:
    """A callback request that stops partway through its body.

    ``content-length``: half the declared body. ``complete-json-prefix``: the
    whole JSON array, but the declared length promises more.
    ``chunked``: one chunk of half the body, no closing chunk.
    """
    head = [f"POST {CALLBACK_PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    half = body[: len(body) // 2]
    if cut == "chunked":
        framing = "Transfer-Encoding: chunked"
        sent = f"{len(half):x}\r\n".encode() + half + b"\r\n"
    elif cut == "complete-json-prefix":
        framing = f"Content-Length: {len(body) + 64}"
        sent = body
    else:
        framing = f"Content-Length: {len(body)}"
        sent = half
    return ("\r\n".join([*head, framing]) + "\r\n\r\n").encode() + sent


async def post_half(
    port: int, body: bytes, headers: Mapping[str, str], cut: str = "content-length"
) -> None:
    """Send a request that stops partway through its body, then hang up."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(half_request(port, body, headers, cut))
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@dataclasses.dataclass(frozen=True)
class Answer:
    """One callback request: when it started and ended, and its status."""

    started: float
    ended: float
    status: int  # 0 when no HTTP answer came (refused, reset, timed out)
    events: int
    error: str = ""  # the client's exception when no answer came


class Ledger:
    """Every event sent and every answer received."""

    def __init__(self) -> None:
        self.sent: dict[str, Event] = {}
        self.acknowledged: set[str] = set()
        self.answers: list[Answer] = []

    def record(self, events: list[Event], answer: Answer) -> None:
        """Note an answer to a body of ``events``."""
        self.answers.append(answer)
        for event in events:
            self.sent[event.event_id] = event
        if answer.status == 200:
            self.acknowledged.update(e.event_id for e in events)

    def statuses(self) -> collections.Counter[int]:
        """How many answers of each status."""
        return collections.Counter(a.status for a in self.answers)

    def longest_unavailable_s(self) -> float:
        """The longest run of consecutive 503 answers, first to last answer.

        Answers are taken in the order they arrived; a 200 ends a run, other
        outcomes (no answer at all) neither extend nor end it.
        """
        longest = 0.0
        run_start: float | None = None
        for answer in sorted(self.answers, key=lambda a: a.ended):
            if answer.status == 503:
                run_start = answer.ended if run_start is None else run_start
                longest = max(longest, answer.ended - run_start)
            elif answer.status == 200:
                run_start = None
        return longest


class CallbackLoad:
    """Posts new bodies continuously and retries each one until it gets a 200.

    ``concurrency`` workers share the work; ``pace_s`` spaces each worker's
    new bodies. ``stop_new()`` stops making new bodies; ``drain()`` waits
    until every body was acknowledged.
    """

    def __init__(
        self,
        base_url: str,
        factory: EventFactory,
        ledger: Ledger,
        *,
        headers: Mapping[str, str] | None = None,
        concurrency: int = 4,
        body_events: tuple[int, int] = (1, 4),
        pace_s: float = 0.02,
        retry_s: float = 0.3,
        timeout_s: float = 10.0,
        seed: int | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + CALLBACK_PATH
        self.factory = factory
        self.ledger = ledger
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._concurrency = concurrency
        self._body_events = body_events
        self._pace_s = pace_s
        self._retry_s = retry_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._random = random.Random(seed)
        self._retries: collections.deque[list[Event]] = collections.deque()
        self._making = True
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.in_flight = 0
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> int:
        """Bodies waiting to be posted again."""
        return len(self._retries)

    def pause(self) -> None:
        """Post nothing (new or retried) until ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        """Post again after ``pause()``."""
        self._flowing.set()

    async def start(self) -> None:
        """Start the workers."""
        # A fresh connection per request: a stopping server closes idle
        # keep-alive connections, which would count as failures of the load.
        connector = aiohttp.TCPConnector(force_close=True)
        self._session = aiohttp.ClientSession(connector=connector)
        self._workers = [
            asyncio.create_task(self._work(), name=f"load-{i}")
            for i in range(self._concurrency)
        ]

    def stop_new(self) -> None:
        """Make no new bodies; keep retrying the ones not acknowledged."""
        self._making = False

    async def drain(self, timeout_s: float) -> None:
        """Wait until every body was acknowledged; stop the workers."""
        self.stop_new()
        self.resume()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*self._workers)
        await self.close()

    async def close(self) -> None:
        """Stop the workers and the HTTP session."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _work(self) -> None:
        while True:
            await self._flowing.wait()
            if self._retries:
                events = self._retries.popleft()
            elif self._making:
                low, high = self._body_events
                events = self.factory.batch(self._random.randint(low, high))
            else:
                return
            status = await self._post(events)
            if status != 200:
                self._retries.append(events)
                await asyncio.sleep(self._retry_s)
            else:
                await asyncio.sleep(self._pace_s)

    async def _post(self, events: list[Event]) -> int:
        assert self._session is not None
        started = time.monotonic()
        status = 0
        error = ""
        self.in_flight += 1
        try:
            async with self._session.post(
                self.url,
                data=body_of(events),
                timeout=self._timeout,
                headers=self._headers,
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = type(exc).__name__
        finally:
            self.in_flight -= 1
        answer = Answer(started, time.monotonic(), status, len(events), error)
        self.ledger.record(events, answer)
        return status


def event_id_header(record: Any) -> str | None:
    """The ``event-id`` header of an events-topic record."""
    for key, value in record.headers or ():
        if key == "event-id":
            return bytes(value).decode()
    return None


def event_id_field(record: Any) -> str | None:
    """The ``eventId`` of an output record."""
    try:
        value = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    event_id = value.get("eventId") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


class Tally:
    """Counts a topic's records by event id, reading on from where it stopped."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        id_of: Callable[[Any], str | None],
    ) -> None:
        self.topic = topic
        self.counts: collections.Counter[str] = collections.Counter()
        self.records = 0
        self._id_of = id_of
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def start(self) -> None:
        """Connect and start at the beginning of every partition."""
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)

    async def read(self, seconds: float) -> None:
        """Read whatever arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            batch = await self._consumer.getmany(timeout_ms=int(min(left, 0.2) * 1000))
            for records in batch.values():
                for record in records:
                    self.records += 1
                    event_id = self._id_of(record)
                    if event_id is not None:
                        self.counts[event_id] += 1

    async def stop(self) -> None:
        """Disconnect."""
        await self._consumer.stop()


@dataclasses.dataclass
class Report:
    """What an audit found; ``lost`` and ``duplicated`` must be 0."""

    sent: int
    acknowledged: int
    found: dict[str, int]
    expected: dict[str, int]
    events_topic_records: int
    lost: int
    duplicated: int
    longest_503_s: float
    statuses: dict[int, int]
    lost_ids: list[str]
    duplicated_ids: list[str]
    output_ids: set[str]
    events_ids: set[str]
    duplicated_by_topic: dict[str, int]

    def summary(self) -> dict[str, int]:
        """The four numbers of the final JSON line."""
        return {
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "lost": self.lost,
            "duplicated": self.duplicated,
        }


async def audit(
    settings: Settings,
    sent: Mapping[str, Event],
    acknowledged: set[str],
    *,
    timeout_s: float = 60.0,
    settle_s: float = 3.0,
    longest_503_s: float = 0.0,
    statuses: Mapping[int, int] | None = None,
    kinds: Iterable[str] = tuple(KINDS),
) -> Report:
    """Read the events and output topics until every acknowledged event is out.

    Then read ``settle_s`` longer, so a duplicate still on its way shows.
    An event is lost when it was acknowledged but is missing from its output
    topic; every output record beyond the first of an event id is a duplicate.
    """
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    partitions = settings.events_partitions
    kinds = tuple(kinds)
    outputs = {
        kind: Tally(
            bootstrap, settings.topic(KINDS[kind][1]), partitions, event_id_field
        )
        for kind in kinds
    }
    events = Tally(bootstrap, settings.topic(EVENTS_TOPIC), partitions, event_id_header)
    tallies = [*outputs.values(), events]
    wanted = {kind: {i for i in acknowledged if sent[i].kind == kind} for kind in kinds}
    for tally in tallies:
        await tally.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.gather(*(t.read(0.5) for t in tallies))
            if all(wanted[k] <= outputs[k].counts.keys() for k in kinds):
                break
        await asyncio.gather(*(t.read(settle_s) for t in tallies))
    finally:
        for tally in tallies:
            await tally.stop()

    lost_ids = sorted(
        i for kind in kinds for i in wanted[kind] if i not in outputs[kind].counts
    )
    duplicated_ids = sorted(
        i for tally in outputs.values() for i, n in tally.counts.items() if n > 1
    )
    duplicated = sum(
        n - 1 for t in outputs.values() for n in t.counts.values() if n > 1
    )
    found = {t.topic: len(wanted[k] & t.counts.keys()) for k, t in outputs.items()}
    found[events.topic] = len(acknowledged & events.counts.keys())

    return Report(
        sent=len(sent),
        acknowledged=len(acknowledged),
        found=found,
        expected={
            **{t.topic: len(wanted[k]) for k, t in outputs.items()},
            events.topic: len(acknowledged),
        },
        events_topic_records=events.records,
        lost=len(lost_ids),
        duplicated=duplicated,
        longest_503_s=longest_503_s,
        statuses=dict(statuses or {}),
        lost_ids=lost_ids,
        duplicated_ids=duplicated_ids,
        output_ids={i for t in outputs.values() for i in t.counts},
        events_ids=set(events.counts),
        duplicated_by_topic={
            t.topic: sum(n - 1 for n in t.counts.values() if n > 1)
            for t in outputs.values()
        },
    )


class Feeder:
    """Publishes new events straight to the events topic, as the ingress would.

    Every ``duplicate_every``-th round also repeats an event of the round
    before, as a Bandwidth retry would. ``published`` holds the events whose
    records were acknowledged.
    """

    def __init__(
        self,
        settings: Settings,
        factory: EventFactory,
        *,
        per_second: float = 100.0,
        duplicate_every: int = 7,
    ) -> None:
        bootstrap = settings.kafka_bootstrap_servers
        assert bootstrap is not None
        self.topic = settings.topic(EVENTS_TOPIC)
        self.published: dict[str, Event] = {}
        self.records = 0
        self.factory = factory
        self._per_second = per_second
        self._duplicate_every = duplicate_every
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5
        )
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def pause(self) -> None:
        """Publish nothing new until ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        """Publish again after ``pause()``."""
        self._flowing.set()

    async def start(self, *, flowing: bool = True) -> None:
        """Connect; unless ``flowing`` is false, publish in the background."""
        await self._producer.start()
        self._started = True
        if flowing:
            self._task = asyncio.create_task(self._run(), name="feeder")

    async def stop(self) -> None:
        """Stop publishing; every record sent so far is acknowledged."""
        self._stopping.set()
        self._flowing.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        if self._started:
            self._started = False
            await self._producer.stop()

    async def publish(self, events: list[Event]) -> None:
        """Publish events now and wait for their acknowledgements."""
        futures = [await self._send(e) for e in events]
        await asyncio.gather(*futures)
        for event in events:
            self.published[event.event_id] = event
        self.records += len(events)

    async def _run(self) -> None:
        tick_s = 0.05
        per_tick = max(1, round(self._per_second * tick_s))
        previous: list[Event] = []
        for tick in itertools.count(1):
            await self._flowing.wait()
            if self._stopping.is_set():
                return
            events = self.factory.batch(per_tick)
            if previous and tick % self._duplicate_every == 0:
                events.append(previous[0])
            await self.publish(events)
            previous = events
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), tick_s)
            if self._stopping.is_set():
                return

    async def _send(self, event: Event) -> asyncio.Future[Any]:
        headers = [("event-id", event.event_id.encode())]
        future: asyncio.Future[Any] = await self._producer.send(
            self.topic, value=event.raw, key=event.message_id.encode(), headers=headers
        )
        return future
