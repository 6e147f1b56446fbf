package io.driftline.example;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.apache.avro.Conversions;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.data.TimeConversions;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

/**
 * Driftline's contracts, read from its own {@code .avsc} files (bundled in the jar from
 * {@code driftline/schemas}), and Avro's single-object encoding, which is Driftline's framing when no
 * Schema Registry is used: {@code C3 01}, the writer schema's CRC-64-AVRO fingerprint as 8
 * little-endian bytes, then the Avro binary body. Avro's {@link BinaryMessageEncoder} writes exactly that.
 */
final class Schemas {
    static final Schema INPUT_EVENT = load("driftline/schemas/input_event.avsc");
    static final Schema LABEL = load("driftline/schemas/label.avsc");
    static final Schema PREDICTION = load("driftline/schemas/prediction.avsc");
    static final Schema DRIFT_ALERT = load("driftline/schemas/drift_alert.avsc");
    /** The example's user schema: a payments system's own record, in its own namespace. */
    static final Schema PAYMENT = load("example/schemas/payment.avsc");

    static final List<Schema> ALL = List.of(INPUT_EVENT, LABEL, PREDICTION, DRIFT_ALERT, PAYMENT);

    /** Plain values: timestamps as {@code long}, strings as {@code Utf8}. */
    static final GenericData PLAIN = new GenericData();

    /** Business values: {@code decimal} as {@link java.math.BigDecimal}, {@code timestamp-micros} as {@link java.time.Instant}. */
    static final GenericData BUSINESS = new GenericData();

    static {
        BUSINESS.addLogicalTypeConversion(new Conversions.DecimalConversion());
        BUSINESS.addLogicalTypeConversion(new TimeConversions.TimestampMicrosConversion());
        BUSINESS.addLogicalTypeConversion(new TimeConversions.TimestampMillisConversion());
    }

    private Schemas() {}

    static Schema load(String resource) {
        try (InputStream in = Schemas.class.getClassLoader().getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException(resource + " is not in the jar: rebuild the example");
            }
            return new Schema.Parser().parse(in);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * The older versions Driftline ships of one of its schemas ({@code prediction.v1.avsc}, ... beside
     * {@code prediction.avsc}), oldest first: data written with them still reads with the newest.
     */
    static List<Schema> olderVersions(String file) {
        List<Schema> older = new ArrayList<>();
        for (int version = 1; version < 10; version++) {
            String resource = "driftline/schemas/" + file + ".v" + version + ".avsc";
            if (Schemas.class.getClassLoader().getResource(resource) != null) {
                older.add(load(resource));
            }
        }
        return older;
    }

    /** The 10-byte single-object header of records written with {@code schema}. */
    static byte[] header(Schema schema) {
        return ByteBuffer.allocate(10)
                .order(ByteOrder.LITTLE_ENDIAN)
                .put((byte) 0xC3)
                .put((byte) 0x01)
                .putLong(SchemaNormalization.parsingFingerprint64(schema))
                .array();
    }

    static String hex(byte[] bytes) {
        return HexFormat.of().formatHex(bytes);
    }

    /** Records of one schema to single-object-encoded bytes. */
    static final class Encoder {
        private final BinaryMessageEncoder<GenericRecord> encoder;

        Encoder(GenericData model, Schema schema) {
            this.encoder = new BinaryMessageEncoder<>(model, schema);
        }

        byte[] encode(GenericRecord record) {
            ByteArrayOutputStream out = new ByteArrayOutputStream(128);
            try {
                encoder.encode(record, out);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return out.toByteArray();
        }
    }

    /**
     * Single-object-encoded bytes to records of {@code reader} (Driftline's {@code file}.avsc), written
     * with it or with any older version Driftline ships.
     */
    static BinaryMessageDecoder<GenericRecord> decoder(Schema reader, String file) {
        BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(PLAIN, reader);
        for (Schema older : olderVersions(file)) {
            decoder.addSchema(older);
        }
        return decoder;
    }

    /** The decoded record, or {@code null} when the bytes are not a record of a known schema. */
    static GenericRecord decodeOrNull(BinaryMessageDecoder<GenericRecord> decoder, byte[] value) {
        if (value == null || value.length == 0) {
            return null;
        }
        try {
            return decoder.decode(value);
        } catch (IOException | RuntimeException e) { // bad header, unknown fingerprint, truncated body
            return null;
        }
    }
}
