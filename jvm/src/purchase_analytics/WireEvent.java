package purchase_analytics;

import java.nio.charset.StandardCharsets;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The fast path of the job's parse (transform.parse_events): one scan over a message's bytes
 * recognises the producer's wire form and reads its fields. The wire form is the event's
 * fields in the schema's order, as compact JSON: strings of printable ASCII without quotes or
 * escapes, integers of at most 18 digits, and for a double field a plain decimal (at most 18
 * digits, an optional fraction of at most 17). Such a value is valid JSON with the right types
 * by construction, so only the value rules are left for the job to check. Any other value
 * (whitespace, another key order, escapes, exponents, extra fields, not JSON at all) gives
 * NULL and takes the job's full checks. The same rules as events.WIRE_PATTERN.
 *
 * The schema comes from Python (events.FIELDS, as the DDL of transform.EVENT_SCHEMA): nothing
 * about the event is written here.
 */
public final class WireEvent implements UDF1<byte[], Row> {
    private static final long serialVersionUID = 1L;
    private static final int MAX_DIGITS = 18;
    private static final int MAX_FRACTION_DIGITS = 17;

    private enum Kind { STRING, BIGINT, DOUBLE }

    private final byte[][] prefixes; // `{"name":` for the first field, `,"name":` for the others
    private final Kind[] kinds;

    public WireEvent(StructType schema) {
        StructField[] fields = schema.fields();
        prefixes = new byte[fields.length][];
        kinds = new Kind[fields.length];
        for (int i = 0; i < fields.length; i++) {
            prefixes[i] = ((i == 0 ? "{" : ",") + "\"" + fields[i].name() + "\":").getBytes(StandardCharsets.US_ASCII);
            kinds[i] = kind(fields[i].dataType());
        }
    }

    private static Kind kind(DataType type) {
        if (type.equals(DataTypes.StringType)) return Kind.STRING;
        if (type.equals(DataTypes.LongType)) return Kind.BIGINT;
        if (type.equals(DataTypes.DoubleType)) return Kind.DOUBLE;
        throw new IllegalArgumentException("the wire form has no " + type.simpleString() + " fields");
    }

    /** Register the parser as a SQL function `name` returning the struct of `ddl`. */
    public static void register(SparkSession spark, String name, String ddl) {
        StructType schema = StructType.fromDDL(ddl);
        spark.udf().register(name, new WireEvent(schema), schema);
    }

    @Override
    public Row call(byte[] value) {
        if (value == null) return null;
        Object[] out = new Object[kinds.length];
        int at = 0;
        for (int i = 0; i < kinds.length; i++) {
            at = expect(value, at, prefixes[i]);
            if (at < 0) return null;
            int end;
            switch (kinds[i]) {
                case STRING:
                    end = stringEnd(value, at);
                    if (end < 0) return null;
                    out[i] = new String(value, at + 1, end - at - 2, StandardCharsets.ISO_8859_1);
                    break;
                case BIGINT:
                    end = integerEnd(value, at);
                    if (end < 0) return null;
                    out[i] = parseLong(value, at, end);
                    break;
                default:
                    end = integerEnd(value, at);
                    if (end < 0) return null;
                    if (end < value.length && value[end] == '.') {
                        int fractionEnd = digitsEnd(value, end + 1, MAX_FRACTION_DIGITS);
                        if (fractionEnd < 0) return null;
                        out[i] = Double.parseDouble(new String(value, at, fractionEnd - at, StandardCharsets.ISO_8859_1));
                        end = fractionEnd;
                    } else {
                        out[i] = (double) parseLong(value, at, end);
                    }
            }
            at = end;
        }
        return at == value.length - 1 && value[at] == '}' ? RowFactory.create(out) : null;
    }

    /** The index after `expected` at `at`, or -1. */
    private static int expect(byte[] value, int at, byte[] expected) {
        if (at + expected.length > value.length) return -1;
        for (int j = 0; j < expected.length; j++) {
            if (value[at + j] != expected[j]) return -1;
        }
        return at + expected.length;
    }

    /** The index after a `"..."` of printable ASCII other than `"` and `\` at `at`, or -1. */
    private static int stringEnd(byte[] value, int at) {
        if (at >= value.length || value[at] != '"') return -1;
        for (int j = at + 1; j < value.length; j++) {
            byte b = value[j];
            if (b == '"') return j + 1;
            if (b < 0x20 || b > 0x7e || b == '\\') return -1;
        }
        return -1;
    }

    /** The index after `-?(0|[1-9][0-9]{0,17})` at `at`, or -1. */
    private static int integerEnd(byte[] value, int at) {
        int start = at < value.length && value[at] == '-' ? at + 1 : at;
        if (start >= value.length) return -1;
        if (value[start] == '0') return start + 1;
        if (value[start] < '1' || value[start] > '9') return -1;
        return digitsEnd(value, start, MAX_DIGITS);
    }

    /** The index after 1 to `max` digits at `at`, or -1. */
    private static int digitsEnd(byte[] value, int at, int max) {
        int j = at;
        while (j < value.length && j - at < max && value[j] >= '0' && value[j] <= '9') j++;
        if (j == at || (j < value.length && value[j] >= '0' && value[j] <= '9')) return -1;
        return j;
    }

    private static long parseLong(byte[] value, int at, int end) {
        boolean negative = value[at] == '-';
        long n = 0;
        for (int j = negative ? at + 1 : at; j < end; j++) n = n * 10 + (value[j] - '0');
        return negative ? -n : n;
    }
}
