package purchase_analytics;

import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.classic.Dataset;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The job's fold of one micro-batch (job.fold_batch), in one pass over its rows: every task
 * sums its valid events per tumbling window and keeps its rejected messages, and the driver
 * merges what the tasks return. Spark SQL needs two passes for the same (a grouping for the
 * sums, a second read of the batch for the dead letters, from a cache or from Kafka), which
 * cost the default job a third of its throughput in the benchmark (docs/performance.md, round 14).
 *
 * The batch has transform.batch_rows' columns: event_time, price, rejection_reason, and for a
 * rejected message its value and source columns (those the batch has). A window is
 * [start, start + window), as transform.window_partials sums it. The tasks keep rejected
 * messages up to a budget of bytes for the batch, shared evenly between them (the driver
 * receives them all); past its share a task only counts them, and the result says the dead
 * letters are incomplete, so the caller reads them from the batch again.
 */
public final class BatchFold {
    private BatchFold() {}

    /** What one task returns: its windows, counts and rejected messages. */
    private static final class Part implements Serializable {
        private static final long serialVersionUID = 1L;
        final HashMap<Long, long[]> windows = new HashMap<>(); // start (us) -> {total, orders, latest event (us)}
        long messages;
        long rejected;
        long keptBytes;
        boolean complete = true;
        final ArrayList<Object[]> deadLetters = new ArrayList<>();
    }

    /** The merged result, read by job.fold_batch. */
    public static final class Result {
        private final byte[] partials;
        private final long messages;
        private final long rejected;
        private final boolean complete;
        private final Dataset<Row> deadLetters;

        Result(byte[] partials, long messages, long rejected, boolean complete, Dataset<Row> deadLetters) {
            this.partials = partials;
            this.messages = messages;
            this.rejected = rejected;
            this.complete = complete;
            this.deadLetters = deadLetters;
        }

        /** Per window, four little-endian longs: start (us), total, orders, latest event (us). */
        public byte[] partials() { return partials; }
        public long messages() { return messages; }
        public long rejected() { return rejected; }
        /** Whether deadLetters() holds every rejected message. */
        public boolean complete() { return complete; }
        /** The rejected messages (rejection_reason, value and source columns), or null if incomplete or none. */
        public Dataset<Row> deadLetters() { return deadLetters; }
    }

    public static Result fold(Dataset<Row> batch, long windowUs, long budgetBytes) {
        if (windowUs <= 0) throw new IllegalArgumentException("the window must be > 0 us, got " + windowUs);
        StructType schema = batch.schema();
        int time = schema.fieldIndex("event_time");
        int price = schema.fieldIndex("price");
        int reason = schema.fieldIndex("rejection_reason");
        List<String> kept = new ArrayList<>();
        kept.add("rejection_reason");
        for (String name : new String[] {"value", "topic", "partition", "offset"}) {
            if (schema.getFieldIndex(name).isDefined()) kept.add(name);
        }
        StructField[] keptFields = new StructField[kept.size()];
        int[] keptAt = new int[kept.size()];
        for (int i = 0; i < keptFields.length; i++) {
            keptAt[i] = schema.fieldIndex(kept.get(i));
            keptFields[i] = schema.fields()[keptAt[i]];
        }

        JavaRDD<InternalRow> scan = batch.queryExecution().toRdd().toJavaRDD();
        // The driver receives every task's rejected messages: the budget is the batch's, shared.
        long budget = budgetBytes / Math.max(1, scan.getNumPartitions());
        List<Part> parts = scan.mapPartitions(rows -> {
            Part part = new Part();
            while (rows.hasNext()) {
                InternalRow row = rows.next();
                part.messages++;
                if (row.isNullAt(reason)) {
                    long micros = row.getLong(time);
                    add(part.windows, micros - Math.floorMod(micros, windowUs), row.getLong(price), 1, micros);
                } else {
                    part.rejected++;
                    if (part.complete) keep(part, row, keptFields, keptAt, budget);
                }
            }
            return Collections.singletonList(part).iterator();
        }).collect();

        HashMap<Long, long[]> windows = new HashMap<>();
        long messages = 0, rejected = 0;
        boolean complete = true;
        List<Row> deadLetters = new ArrayList<>();
        for (Part part : parts) {
            messages += part.messages;
            rejected += part.rejected;
            complete &= part.complete;
            for (Map.Entry<Long, long[]> e : part.windows.entrySet()) {
                add(windows, e.getKey(), e.getValue()[0], e.getValue()[1], e.getValue()[2]);
            }
            for (Object[] values : part.deadLetters) deadLetters.add(RowFactory.create(values));
        }
        ByteBuffer partials = ByteBuffer.allocate(windows.size() * 4 * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        for (Map.Entry<Long, long[]> e : windows.entrySet()) {
            partials.putLong(e.getKey()).putLong(e.getValue()[0]).putLong(e.getValue()[1]).putLong(e.getValue()[2]);
        }
        Dataset<Row> dead = complete && rejected > 0 ? batch.sparkSession().createDataFrame(deadLetters, new StructType(keptFields)) : null;
        return new Result(partials.array(), messages, rejected, complete, dead);
    }

    /** Add a total, its orders and their latest event time to a window of `windows`: an event in a task, a task's sum on the driver. */
    private static void add(HashMap<Long, long[]> windows, long startUs, long total, long orders, long latestUs) {
        long[] w = windows.computeIfAbsent(startUs, k -> new long[] {0, 0, Long.MIN_VALUE});
        w[0] = Math.addExact(w[0], total);
        w[1] += orders;
        w[2] = Math.max(w[2], latestUs);
    }

    /** Keep a rejected message's columns, unless that passes the task's budget: then it stops keeping. */
    private static void keep(Part part, InternalRow row, StructField[] fields, int[] at, long budget) {
        Object[] values = new Object[fields.length];
        long bytes = 64;
        for (int i = 0; i < fields.length; i++) {
            if (row.isNullAt(at[i])) continue;
            Object v = row.get(at[i], fields[i].dataType());
            if (v instanceof byte[] b) {
                bytes += b.length;
            } else if (v instanceof org.apache.spark.unsafe.types.UTF8String s) {
                bytes += s.numBytes();
                v = s.toString();
            }
            values[i] = v;
        }
        part.keptBytes += bytes;
        if (part.keptBytes > budget) {
            part.complete = false;
            part.deadLetters.clear();
        } else {
            part.deadLetters.add(values);
        }
    }
}
