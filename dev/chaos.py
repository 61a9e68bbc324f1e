"""Chaos harness: the outside oracle for exactly-once Kafka ingestion.

Produces uniquely identified events to a multi-partition topic while 1-3
`tributary serve` workers in one consumer group ingest them, and meanwhile:
SIGKILLs workers at random, starts and stops workers (rebalances), SIGSTOPs a
worker past its session timeout and resumes it (the zombie case), and
restarts the broker. About 1 % of the records are malformed and must land in
the quarantine table. The table has no dedup key, so exactly-once rests on
positions alone. Beside the Kafka workers, HTTP clients post batches to the
same table with an Idempotency-Key each, retrying a failed or timed-out
request with the same key against any live worker until it is answered. At
the end it waits for the tables to settle and compares them with the topic,
the producer's ledger and the HTTP clients' ledger, record by record: every
good record once in raw.events, every malformed one once in
quarantine.events. Exit status 1 on any missing or duplicated record.

With --dedup-memory SIZE the table has a dedup key (event_id) whose index
may hold only SIZE in memory, so it spills to disk and restarts resume from
it under the kills. Then the oracle counts by id: a producer's retried send
lands once, and a key wrongly held by the index shows up as a missing id.

Usage: chaos.py BINARY [--events N] [--http-events H] [--kills K] [--partitions P] [--seed S] [--malformed-every M]
                [--dedup-memory SIZE]
The broker is managed with dev/kafka.sh (TRIBUTARY_KAFKA_PORT is honoured).
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """
[server]
listen = "127.0.0.1:0"
idempotency_window = "60s"

[commit]
max_latency = "300ms"

# Every worker compacts and expires the shared table often, racing the
# ingest commits and each other, so exactly-once is checked with them.
[maintenance]
interval = "3s"
snapshot_max_age = "60s"
min_snapshots = 5
compact_min_files = 2

# No dedup key unless --dedup-memory: duplicates must be visible to the
# oracle, not hidden.
[[tables]]
name = "raw.events"
{dedup}fields = [
  {{ name = "event_id", type = "string", required = true }},
  {{ name = "seq",      type = "long",   required = true }},
]

[[kafka]]
name = "chaos"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
table = "raw.events"
properties = {{ "group.instance.id" = "{instance}", "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500", "receive.message.max.bytes" = "2147483647", "reconnect.backoff.max.ms" = "1000", "max.poll.interval.ms" = "10000" }}
"""


def kafka(cmd=None):
    args = ["bash", os.path.join(ROOT, "dev", "kafka.sh")] + ([cmd] if cmd else [])
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


class Workers:
    SLOTS = 3

    def __init__(self, binary, configs, data_dir, log_dir):
        self.binary, self.configs, self.data_dir, self.log_dir = binary, configs, data_dir, log_dir
        self.procs = []
        self.started = 0
        # Each slot listens on its own port, so HTTP clients can find it.
        self.ports = [free_port() for _ in range(self.SLOTS)]

    def start(self):
        # Each worker slot has a static group membership (group.instance.id):
        # a replacement takes over its dead predecessor's place at once.
        used = {p.slot for p in self.alive()}
        free = [i for i in range(self.SLOTS) if i not in used]
        if not free:
            return
        slot = free[0]
        self.started += 1
        log = open(os.path.join(self.log_dir, f"worker-{self.started}.log"), "w")
        p = subprocess.Popen(
            [self.binary, "--log-format", "json", "serve", "--config", self.configs[slot],
             "--data-dir", self.data_dir, "--http", f"127.0.0.1:{self.ports[slot]}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        p.born = time.time()
        p.slot = slot
        self.procs.append(p)

    def alive(self):
        self.procs = [p for p in self.procs if p.poll() is None]
        return self.procs

    def signal(self, sig):
        # Hit workers that have had time to join the group and commit.
        alive = [p for p in self.alive() if time.time() - p.born > 3]
        if not alive:
            return None
        p = random.choice(alive)
        p.send_signal(sig)
        if sig == signal.SIGKILL:
            p.wait(timeout=10)  # its slot is free only once it is gone
        return p

    def stop_all(self):
        for p in self.alive():
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpClients:
    """Clients that post batches with an Idempotency-Key and retry each one,
    same key, same body, against any live worker until it is answered."""

    BATCH = 20

    def __init__(self, workers, events, malformed_every, clients=2):
        self.workers = workers
        def bad(i):
            return malformed_every and i % malformed_every == malformed_every - 1
        self.is_bad = bad
        self.good = {f"h-{i}" for i in range(events) if not bad(i)}
        self.bad = sum(1 for i in range(events) if bad(i))
        self.retries = self.requests = 0
        self.refused = []
        self.done = threading.Event()
        batches = [list(range(i, min(i + self.BATCH, events))) for i in range(0, events, self.BATCH)]
        self.threads = [threading.Thread(target=self.run, args=(batches[c::clients], c), daemon=True)
                        for c in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join()

    def run(self, batches, client):
        for batch in batches:
            lines = []
            for i in batch:
                if self.is_bad(i):
                    lines.append(f'{{"event_id":"h-{i}",')
                else:
                    lines.append(json.dumps({"event_id": f"h-{i}", "seq": i}))
            self.post("\n".join(lines).encode(), str(uuid.uuid4()))
            time.sleep(random.uniform(0.01, 0.1))

    def post(self, body, key):
        while True:
            ports = [self.workers.ports[p.slot] for p in self.workers.alive()]
            if not ports:
                time.sleep(0.5)
                continue
            req = urllib.request.Request(
                f"http://127.0.0.1:{random.choice(ports)}/v1/tables/raw.events/events", data=body, method="POST",
                headers={"Idempotency-Key": key, "Content-Type": "application/x-ndjson"})
            self.requests += 1
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    self.refused.append(f"{e.code}: {e.read()[:300]!r}")
                    return
            except (OSError, ValueError):
                pass  # killed, stopped or paused worker: retry elsewhere
            self.retries += 1
            time.sleep(0.2)


def sql(binary, config, data_dir, query):
    out = subprocess.run([binary, "sql", "--config", config, "--data-dir", data_dir, "--format", "json", query],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["rows"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--http-events", type=int, default=2_000, help="events posted over HTTP")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=int, default=2_000, help="events per second")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--broker-restarts", type=int, default=1)
    ap.add_argument("--malformed-every", type=int, default=100, help="every Mth record is malformed (0: none)")
    ap.add_argument("--dedup-memory", help="give the table a dedup key with this memory bound, e.g. 1MiB")
    args = ap.parse_args()
    dedup = f'dedup_key = "event_id"\ndedup_memory = "{args.dedup_memory}"\n' if args.dedup_memory else ""

    random.seed(args.seed)

    brokers = kafka()
    work = tempfile.mkdtemp(prefix="tributary-chaos-")
    topic = f"chaos-{args.seed}-{os.getpid()}"
    configs = []
    for slot in range(Workers.SLOTS):
        configs.append(os.path.join(work, f"chaos-w{slot}.toml"))
        with open(configs[-1], "w") as f:
            f.write(CONFIG.format(brokers=brokers, topic=topic, group=f"g-{topic}", instance=f"w{slot}", dedup=dedup))
    config = configs[0]
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, num_partitions=args.partitions, replication_factor=1)])[topic].result(30)
    print(f"chaos: seed {args.seed}, {args.events} events, topic {topic} x{args.partitions}, work dir {work}")

    ledger = {}
    delivered = set()
    produced = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            delivered.add(msg.key().decode())

    def producer():
        # Not idempotent: the test broker forgets producer ids when it
        # restarts. A retried send may land twice; the oracle compares the
        # table with what is really in the topic, record by record.
        p = Producer({"bootstrap.servers": brokers, "linger.ms": 5, "acks": "all",
                      "message.timeout.ms": 120000})
        interval = 1.0 / args.rate
        t0 = time.time()
        for i in range(args.events):
            part = i % args.partitions
            eid = f"e-{i}"
            ledger[eid] = part
            bad = args.malformed_every and i % args.malformed_every == args.malformed_every - 1
            value = f'{{"event_id":"{eid}",' if bad else json.dumps({"event_id": eid, "seq": i})
            while True:
                try:
                    p.produce(topic, key=eid, value=value, partition=part, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
            lag = t0 + i * interval - time.time()
            if lag > 0:
                time.sleep(lag)
        remaining = p.flush(120)
        if remaining:
            print(f"producer: {remaining} messages not delivered", file=sys.stderr)
        produced.set()

    workers = Workers(args.binary, configs, os.path.join(work, "lake"), work)
    workers.start()
    time.sleep(2)  # create the tables before others race to
    prod = threading.Thread(target=producer, daemon=True)
    prod.start()
    clients = HttpClients(workers, args.http_events, args.malformed_every)
    clients.start()
    def all_produced():
        return produced.is_set() and not any(t.is_alive() for t in clients.threads)

    stats = {"kills": 0, "starts": 1, "graceful_stops": 0, "zombies": 0, "broker_restarts": 0}
    # Broker restarts are spread evenly over the kills.
    restart_at = [args.kills * (i + 1) // (args.broker_restarts + 1) for i in range(args.broker_restarts)]
    # Go on until everything is produced and every kind of fault happened.
    while not all_produced() or stats["kills"] < args.kills or stats["zombies"] == 0:
        time.sleep(random.uniform(0.5, 2.0))
        action = random.random()
        if stats["broker_restarts"] < args.broker_restarts and stats["kills"] >= restart_at[stats["broker_restarts"]]:
            kafka("stop")
            time.sleep(1)
            kafka()
            stats["broker_restarts"] += 1
            print("chaos: broker restarted")
        if action < 0.45 and stats["kills"] < args.kills:
            if workers.signal(signal.SIGKILL):
                stats["kills"] += 1
        elif (action < 0.6 or (stats["zombies"] == 0 and stats["kills"] >= 2)) and stats["zombies"] < max(1, args.kills // 5):
            p = workers.signal(signal.SIGSTOP)
            if p:
                if len(workers.alive()) < 2:
                    workers.start()
                    stats["starts"] += 1
                time.sleep(8)  # past session.timeout.ms: its partitions move
                p.send_signal(signal.SIGCONT)
                stats["zombies"] += 1
        elif action < 0.75 and len(workers.alive()) > 1:
            workers.signal(signal.SIGTERM)
            stats["graceful_stops"] += 1
        if len(workers.alive()) < random.randint(1, 3):
            workers.start()
            stats["starts"] += 1

    prod.join()
    clients.join()
    # Fill every slot: a static member that died holds its partitions until
    # a worker with the same group.instance.id comes back (the test broker
    # does not expire it), so the final drain needs all slots.
    while len(workers.alive()) < Workers.SLOTS:
        workers.start()
        stats["starts"] += 1
    data = os.path.join(work, "lake")
    malformed = sum(1 for i in range(args.events) if args.malformed_every and i % args.malformed_every == args.malformed_every - 1)
    good_expected = args.events - malformed + len(clients.good)
    total, last, stable_since = 0, -1, time.time()
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            total = sql(args.binary, config, data, "SELECT count(*) FROM raw.events")[0][0]
        except subprocess.CalledProcessError:
            total = -1
        if total != last:
            last, stable_since = total, time.time()
        if total >= good_expected and time.time() - stable_since > 3:
            break
        time.sleep(1)
    workers.stop_all()

    topic_all, topic_bad = read_topic(brokers, topic, args.partitions)
    topic_records = {k: v for k, v in topic_all.items() if k not in topic_bad}
    table_rows = sql(args.binary, config, data,
                     "SELECT _source_partition, _source_offset, event_id FROM raw.events WHERE _source = 'kafka'")
    http_rows = [r[0] for r in sql(args.binary, config, data, "SELECT event_id FROM raw.events WHERE _source = 'http'")]
    http_missing = len(clients.good - set(http_rows))
    http_duplicated = len(http_rows) - len(set(http_rows))
    http_unexpected = len(set(http_rows) - clients.good)
    # Kafka quarantine positions are "<topic>/<partition>@<offset>"; HTTP
    # ones "request <id> record <n>".
    quarantined = {}
    q_duplicated = 0
    http_quarantined = []
    for (position,) in sql(args.binary, config, data, "SELECT position FROM quarantine.events"):
        if position.startswith("request "):
            http_quarantined.append(position)
            continue
        part, off = position.rsplit("/", 1)[1].split("@")
        key = (int(part), int(off))
        q_duplicated += key in quarantined
        quarantined[key] = True
    q_missing = len(set(topic_bad) - set(quarantined))
    q_unexpected = len(set(quarantined) - set(topic_bad))
    table_records = {}
    duplicated = 0
    for part, off, eid in table_rows:
        if (part, off) in table_records:
            duplicated += 1
        table_records[(part, off)] = eid
    missing = len(set(topic_records) - set(table_records))
    if args.dedup_memory:
        # A retried send's second copy is a duplicate by key: count by id.
        ids = [eid for _, _, eid in table_rows]
        missing = len(set(topic_records.values()) - set(ids))
        duplicated = len(ids) - len(set(ids))
    unexpected = len(set(table_records) - set(topic_records))
    wrong = sum(1 for k, eid in table_records.items() if k in topic_records and topic_records[k] != eid)
    in_topic = set(topic_records.values())
    bad_ids = {topic_all[k] for k in topic_bad}
    ids_missing = len(in_topic - set(table_records.values()))
    broker_lost = len(delivered - in_topic - bad_ids)
    # The producer's ledger: every acknowledged good id must be in the table.
    acked_missing = len(delivered - bad_ids - set(table_records.values()))
    producer_dups = len(topic_records) - len(set(topic_records.values()))
    per_part_table, per_part_topic = {}, {}
    for (part, _), _ in table_records.items():
        per_part_table[part] = per_part_table.get(part, 0) + 1
    for (part, _), _ in topic_records.items():
        per_part_topic[part] = per_part_topic.get(part, 0) + 1
    snapshots = sql(args.binary, config, data, 'SELECT count(*) FROM raw."events$snapshots"')[0][0]
    print("chaos oracle:")
    print(f"  produced ids            {len(ledger)}, acknowledged {len(delivered)}, in topic {len(topic_records)} good "
          f"+ {len(topic_bad)} malformed")
    print(f"  producer-side           retried duplicates {producer_dups}, acknowledged but lost by the broker {broker_lost}")
    print(f"  rows in table           {len(table_rows)}")
    print(f"  missing records         {missing}   (ids missing {ids_missing}, acknowledged ids missing {acked_missing})")
    print(f"  duplicated records      {duplicated}" + ("   (by id: dedup key on)" if args.dedup_memory else ""))
    print(f"  unexpected/mismatched   {unexpected}/{wrong}")
    print(f"  quarantine              {len(quarantined)} of {len(topic_bad)} malformed records, missing {q_missing}, "
          f"duplicated {q_duplicated}, unexpected {q_unexpected}")
    print(f"  http                    {len(clients.good)} good + {clients.bad} malformed in {clients.requests} requests "
          f"({clients.retries} retried): rows {len(http_rows)}, missing {http_missing}, duplicated {http_duplicated}, "
          f"unexpected {http_unexpected}; quarantined {len(http_quarantined)} of {clients.bad}, "
          f"distinct {len(set(http_quarantined))}; refused {len(clients.refused)} {clients.refused[:3]}")
    print(f"  per partition           table {dict(sorted(per_part_table.items()))}  topic {dict(sorted(per_part_topic.items()))}")
    print(f"  snapshots               {snapshots}")
    print(f"  kills {stats['kills']}, worker starts {stats['starts']}, graceful stops {stats['graceful_stops']}, "
          f"zombie pauses {stats['zombies']}, broker restarts {stats['broker_restarts']}")
    ok = (missing == 0 and duplicated == 0 and unexpected == 0 and wrong == 0 and ids_missing == 0
          and acked_missing == 0 and broker_lost == 0 and q_missing == 0 and q_duplicated == 0 and q_unexpected == 0
          and http_missing == 0 and http_duplicated == 0 and http_unexpected == 0 and not clients.refused
          and len(http_quarantined) == clients.bad == len(set(http_quarantined)))
    print("chaos: OK, every record exactly once" if ok else f"chaos: FAILED (logs in {work})")
    sys.exit(0 if ok else 1)


def read_topic(brokers, topic, partitions):
    """Every committed record of the topic, (partition, offset) -> event_id
    (the message key), and the set of those whose value is not JSON."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"oracle-{topic}", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "receive.message.max.bytes": 2147483647})
    out, bad = {}, set()
    for part in range(partitions):
        low, high = c.get_watermark_offsets(TopicPartition(topic, part), timeout=30)
        c.assign([TopicPartition(topic, part, low)])
        pos = low
        while pos < high:
            msg = c.poll(5)
            if msg is None:
                continue
            if msg.error():
                raise RuntimeError(msg.error())
            out[(part, msg.offset())] = msg.key().decode()
            try:
                json.loads(msg.value())
            except ValueError:
                bad.add((part, msg.offset()))
            pos = msg.offset() + 1
    c.close()
    return out, bad


if __name__ == "__main__":
    main()
