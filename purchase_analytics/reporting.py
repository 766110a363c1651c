"""What the job reports of each batch of its windows query: its console line, the summary,
and its record in the metrics topic and the progress file (progress.BatchProgress), at least
once: the records of batches committed before a stop are written again at the next start,
recovered from the checkpoint."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from .checkpoint import WINDOWS_DIR, checkpoint_files, query_checkpoint, read_query_id
from .config import AggregatorConfig
from .failures import MAX_RESTARTS, JobFailed, OutputRefused, OutputRetriable, backoff_s
from .late_events import windows_per_event
from .progress import BatchProgress, JobSummary, metrics_key
from .queries import WindowsHandler, kafka_source
from .sinks import KafkaPublisher
from .transform import parse_events, valid_events

METRICS_WRITTEN = "metrics-written.json"  # in the job's checkpoint: the last batch whose metrics record was written


class ProgressReporter:
    """Folds each new batch of the windows query into the summary, with its late events
    (LateEvents), prints its line and writes its record to the metrics topic and the
    progress file.

    The records are at least once. Spark commits a batch before the job reads its progress
    report, so a job killed in between would lose that batch's record; the job therefore
    notes in its checkpoint (METRICS_WRITTEN) the last batch whose record was written, and
    when it starts, before the queries do, writes the records of the committed batches
    after it (recovered_records: their input is known exactly from the checkpoint's offset
    log). A record written twice has the same key (metrics_key), so a reader keeps one."""

    def __init__(self, handler: WindowsHandler, config: AggregatorConfig, summary: JobSummary, publisher: KafkaPublisher | None, out):
        self.handler, self.config, self.summary, self.publisher, self.out = handler, config, summary, publisher, out
        self.batches_since_restart = 0
        self.windows_per_event = windows_per_event(config)
        self._writes_records = bool(config.progress_file or (publisher and config.metrics_topic))
        if self._writes_records:
            self._write_missing_records()

    def _write_missing_records(self) -> None:
        spark, checkpoint = self.handler.spark, self.config.checkpoint_dir
        files = checkpoint_files(spark, checkpoint)
        committed = committed_batches(spark, checkpoint)
        if METRICS_WRITTEN not in files.names():
            # a new checkpoint (nothing committed), or one of a version that did not note its records
            files.write(METRICS_WRITTEN, json.dumps({"batch_id": committed[-1] if committed else -1}) + "\n")
            return
        written = int(json.loads(files.read(METRICS_WRITTEN))["batch_id"])
        missing = [b for b in committed if b > written]
        if missing:
            print(f"writing the metrics records of batches {missing[0]}-{missing[-1]}, committed before the job stopped", file=self.out)
            self._write_records(recovered_records(spark, self.config, missing))

    def _write_records(self, records: list[dict]) -> None:
        if not records:  # most polls: no new batch
            return
        if self.config.progress_file:
            with open(self.config.progress_file, "a") as f:
                f.writelines(json.dumps(record) + "\n" for record in records)
        if self.publisher and self.config.metrics_topic:
            self._publish(records)
        # Spark's report of a trigger that ran nothing carries the next batch id, not committed
        # yet: the note names the last committed batch written, so the real one is not passed over
        committed = committed_batches(self.handler.spark, self.config.checkpoint_dir)
        done = [r for r in records if committed and r["batch_id"] <= committed[-1]]
        if done:
            last = max(done, key=lambda r: r["batch_id"])
            files = checkpoint_files(self.handler.spark, self.config.checkpoint_dir)
            files.write(METRICS_WRITTEN, json.dumps({"batch_id": last["batch_id"], "query_id": last["query_id"]}) + "\n")

    def report(self, query) -> None:
        records = []
        for raw in self._new_reports(query):
            progress = BatchProgress.from_spark(json.loads(raw.json))
            added = self.handler.late.added(progress.batch_id, progress.input_rows > 0, _epoch_s(progress.watermark))
            dropped_rows = progress.valid * self.windows_per_event - added
            progress = replace(progress, dropped_late=dropped_rows // self.windows_per_event)
            if self.summary.record(progress):
                self.batches_since_restart += 1
                print(progress.line(), file=self.out, flush=True)
            records.append(progress.to_record(self.config.topic))
        if self._writes_records:
            self._write_records(records)

    def _publish(self, records: list[dict]) -> None:
        """The batches' records to the metrics topic: written, or sent again after a failure
        a retry can heal (with backoff, as a query restart), else the job ends with its line."""
        for attempt in range(1, MAX_RESTARTS + 2):
            try:
                for record in records:
                    self.publisher.send(self.config.metrics_topic, record, key=metrics_key(record))
                self.publisher.flush()
                return
            except OutputRefused as exc:
                raise JobFailed(str(exc)) from None
            except OutputRetriable as exc:
                if attempt > MAX_RESTARTS:
                    raise JobFailed(f"the metrics could not be written {attempt} times in a row; last error: {exc}") from None
                print(f"metrics not written ({exc}); sending them again ({attempt}/{MAX_RESTARTS})", file=self.out, flush=True)
                time.sleep(backoff_s(attempt))

    def _new_reports(self, query) -> list:
        """The query's progress reports not folded in yet, oldest first. Between two polls
        there is usually one new batch, or none: the last report tells. Only after a gap (or
        a restart) are the recent ones read, which are up to a hundred reports, each a few
        py4j calls and a JSON document: read every poll, they cost the driver about a tenth
        of a core and slowed every batch."""
        last = query.lastProgress
        if last is None or not self.summary.is_new(str(last.runId), last.batchId):
            return []
        if self.summary.is_next(str(last.runId), last.batchId):
            return [last]
        return [raw for raw in query.recentProgress if self.summary.is_new(str(raw.runId), raw.batchId)]


def committed_batches(spark: SparkSession, checkpoint_dir: str) -> list[int]:
    """The windows query's committed batch ids, oldest first (Spark keeps the last hundred or so)."""
    commits = checkpoint_files(spark, f"{query_checkpoint(checkpoint_dir, WINDOWS_DIR)}/commits")
    return sorted(int(name) for name in commits.names() if name.isdigit())


def _offset_log(files, name: str) -> tuple[dict, dict[str, int]]:
    """An entry of Spark's offset log (`offsets/N`: a version line, the batch's metadata,
    then one line per source) or the Kafka source's initial offsets (`sources/0/0`, after a
    NUL byte): (metadata, {partition: offset}) of the job's one source."""
    lines = files.read(name).lstrip("\x00").splitlines()
    source = json.loads(lines[-1])
    return (json.loads(lines[1]) if len(lines) > 2 else {}), {p: int(o) for parts in source.values() for p, o in parts.items()}


def _iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def recovered_records(spark: SparkSession, config: AggregatorConfig, batch_ids: list[int]) -> list[dict]:
    """The metrics records of committed batches, computed again from the checkpoint: each
    batch's input is the offsets between its offset-log entry and the one before (the
    source's initial offsets for batch 0), read again from the topic; its watermark and time
    are in its entry. `messages`, `rejected` and `valid` are the batch's; `dropped_late`
    counts the valid events whose windows had ended at or before the watermark of the batch
    before (Spark's rule; with sliding windows, the late window rows over the windows per
    event). Spark's timings, rates and state rows are not kept: those are 0, and the record
    says `"recovered": true`."""
    query = checkpoint_files(spark, query_checkpoint(config.checkpoint_dir, WINDOWS_DIR))
    query_id = read_query_id(query)
    records = []
    for batch_id in batch_ids:
        meta, end = _offset_log(query, f"offsets/{batch_id}")
        before, start = _offset_log(query, f"offsets/{batch_id - 1}") if batch_id > 0 else ({}, _offset_log(query, "sources/0/0")[1])
        start = {p: start.get(p, 0) for p in end}  # a partition added since starts at its beginning
        raw = (
            kafka_source(spark.read, config)
            .option("startingOffsets", json.dumps({config.topic: start}))
            .option("endingOffsets", json.dumps({config.topic: end}))
            .load()
        )
        batch_ms, watermark_ms = int(meta.get("batchTimestampMs", 0)), int(meta.get("batchWatermarkMs", 0))
        late_ms = int(before.get("batchWatermarkMs", 0))  # Spark judges late rows by the watermark of the batch before
        # the future-time rule as the batch judged it: against its own time, not now
        parsed = parse_events(raw, config.price_max, config.max_future_s - int(time.time() - batch_ms / 1000)).cache()
        try:
            counts = parsed.select(F.count(F.lit(1)), F.count_if(F.col("rejection_reason").isNotNull())).first()
            late_rows = (
                valid_events(parsed)
                .select(F.window("event_time", config.window_duration, config.slide_duration).alias("w"))
                .where(F.col("w.end") <= F.timestamp_millis(F.lit(late_ms)))
                .count()
            )
        finally:
            parsed.unpersist()
        progress = BatchProgress(
            run_id="",
            batch_id=batch_id,
            timestamp=_iso_ms(batch_ms),
            input_rows=int(counts[0]),
            input_rows_per_s=0.0,
            processed_rows_per_s=0.0,
            batch_duration_ms=0,
            messages=int(counts[0]),
            rejected=int(counts[1]),
            dropped_late=late_rows // windows_per_event(config),
            state_rows=0,
            watermark=_iso_ms(watermark_ms) if watermark_ms else None,
            end_offsets={config.topic: end},
            query_id=query_id,
        )
        records.append({**progress.to_record(config.topic), "recovered": True})
    return records


def _epoch_s(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
