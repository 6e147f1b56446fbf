package io.driftline.example;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Producing to Driftline from Java: events keyed by event id with the default partitioner (murmur2),
 * labels keyed the same way (so each lands on its event's partition number), deliberately bad records,
 * and records of a user schema with business field types.
 */
final class Produce implements AutoCloseable {
    /** Each deliberately bad record carries the reason Driftline should dead-letter it with in this header. */
    static final String EXPECT_REASON = "example.expect-reason";

    /** Ranges of the nine Agrawal features the test model knows (salary, commission, age, ...). */
    private static final double[][] AGRAWAL = {
        {20_000, 150_000}, {0, 75_000}, {20, 80}, {0, 4}, {1, 20}, {0, 8}, {50_000, 900_000}, {1, 30}, {0, 500_000},
    };

    private static final String[] COUNTRIES = {"DE", "FR", "US", "GB", "JP", "BR", "IN", "NL"};

    private final KafkaProducer<byte[], byte[]> producer;
    private final List<Future<RecordMetadata>> sent = new ArrayList<>();

    Produce(Properties client) {
        Properties props = new Properties();
        props.putAll(client);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "driftline-java-example");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        // No partitioner set: Java's default, murmur2 of the key. Driftline answers on the event's partition.
        this.producer = new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer());
    }

    /** {@code produce}: canonical InputEvents, and optionally bad records and a label per good event. */
    static Map<String, Object> events(Args args) throws InterruptedException {
        String topic = args.required("events-topic");
        String labelsTopic = args.optional("labels-topic");
        String runId = args.get("run-id", "java");
        int count = args.integer("count", 1000);
        int features = args.integer("features", AGRAWAL.length);
        Random random = new Random(args.integer("seed", 1));
        Schemas.Encoder events = new Schemas.Encoder(Schemas.PLAIN, Schemas.INPUT_EVENT);
        Schemas.Encoder labels = new Schemas.Encoder(Schemas.PLAIN, Schemas.LABEL);
        long now = System.currentTimeMillis();
        try (Produce out = new Produce(args.clientProperties())) {
            List<String> ids = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                String id = String.format("%s-%09d", runId, i);
                ids.add(id);
                out.send(topic, id, events.encode(inputEvent(id, now + i, agrawal(random, features))), Map.of());
            }
            Map<String, String> bad = args.flag("bad") ? out.badRecords(topic, runId, events, features, now) : Map.of();
            List<RecordMetadata> eventsMeta = out.flush();
            int labelled = 0;
            int labelsOnEventPartition = 0;
            if (labelsTopic != null) {
                for (int i = 0; i < count; i++) {
                    out.send(labelsTopic, ids.get(i), labels.encode(label(ids.get(i), now + i, random.nextInt(2))), Map.of());
                }
                List<RecordMetadata> labelsMeta = out.flush();
                labelled = labelsMeta.size();
                for (int i = 0; i < count; i++) {
                    labelsOnEventPartition += labelsMeta.get(i).partition() == eventsMeta.get(i).partition() ? 1 : 0;
                }
            }
            Map<String, Object> summary = new LinkedHashMap<>();
            summary.put("events", count);
            summary.put("bad_records", bad);
            summary.put("labels", labelled);
            summary.put("labels_on_event_partition", labelsOnEventPartition);
            summary.put("events_per_partition", perPartition(eventsMeta.subList(0, count)));
            summary.put("input_event_header", Schemas.hex(Schemas.header(Schemas.INPUT_EVENT)));
            return summary;
        }
    }

    /**
     * {@code produce-payments}: records of the user schema {@code com.example.payments.Payment}, and with
     * {@code --json-count N} as many payments again as JSON objects (UTF-8; {@code event_time} an
     * ISO-8601 UTC string with microseconds, {@code amount} a JSON number, {@code tip} a number or null),
     * all keyed by event id with the default partitioner; {@code --bad-json} adds one JSON event of each
     * kind Driftline dead-letters.
     */
    static Map<String, Object> payments(Args args) throws InterruptedException {
        String topic = args.required("topic");
        String runId = args.get("run-id", "pay");
        int count = args.integer("count", 100);
        int jsonCount = args.integer("json-count", 0);
        Random random = new Random(args.integer("seed", 1));
        Schemas.Encoder encoder = new Schemas.Encoder(Schemas.BUSINESS, Schemas.PAYMENT);
        Instant start = Instant.now().truncatedTo(ChronoUnit.MICROS);
        int withTip = 0;
        int jsonWithTip = 0;
        try (Produce out = new Produce(args.clientProperties())) {
            for (int i = 0; i < count; i++) {
                String id = String.format("%s-%09d", runId, i);
                Map<String, Object> values = payment(random, id, start.plus(i * 1_500L, ChronoUnit.MICROS), i);
                withTip += values.get("tip") == null ? 0 : 1;
                GenericRecord payment = new GenericData.Record(Schemas.PAYMENT);
                values.forEach(payment::put);
                out.send(topic, id, encoder.encode(payment), Map.of());
            }
            for (int i = 0; i < jsonCount; i++) {
                String id = String.format("%s-json-%09d", runId, i);
                Map<String, Object> values = payment(random, id, start.plus(i * 1_500L + 700, ChronoUnit.MICROS), i);
                jsonWithTip += values.get("tip") == null ? 0 : 1;
                values.put("event_time", ISO_MICROS.format((Instant) values.get("event_time")));
                out.send(topic, id, Json.bytes(values), Map.of());
            }
            Map<String, String> badJson = args.flag("bad-json") ? out.badJson(topic, runId, start) : Map.of();
            List<RecordMetadata> meta = out.flush();
            Map<String, Object> summary = new LinkedHashMap<>();
            summary.put("payments", count);
            summary.put("with_tip", withTip);
            summary.put("payments_per_partition", perPartition(meta.subList(0, count)));
            summary.put("json_payments", jsonCount);
            summary.put("json_with_tip", jsonWithTip);
            summary.put("json_payments_per_partition", perPartition(meta.subList(count, count + jsonCount)));
            summary.put("json_event_time", "iso8601");
            summary.put("bad_json", badJson);
            summary.put("payment_header", Schemas.hex(Schemas.header(Schemas.PAYMENT)));
            return summary;
        }
    }

    /** Event times of JSON payments: ISO-8601, UTC, always six fractional digits ({@code 2026-12-05T00:25:38.123456Z}). */
    static final DateTimeFormatter ISO_MICROS =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSSSSSX").withZone(ZoneOffset.UTC);

    /** One payment's fields, in the schema's order: Avro's business values (Instant, BigDecimal). */
    private static Map<String, Object> payment(Random random, String id, Instant time, int i) {
        Map<String, Object> values = new LinkedHashMap<>();
        values.put("event_id", id);
        values.put("event_time", time);
        values.put("amount", BigDecimal.valueOf(1 + random.nextInt(999_999), 2).setScale(2, RoundingMode.UNNECESSARY));
        values.put("tip", i % 4 == 0 ? null : Math.round(random.nextDouble() * 2_000) / 100.0);
        values.put("country", COUNTRIES[random.nextInt(COUNTRIES.length)]);
        values.put("card_present", random.nextBoolean());
        return values;
    }

    /** One JSON event of each kind Driftline dead-letters; returns key to the reason it should give. */
    private Map<String, String> badJson(String topic, String runId, Instant time) {
        Map<String, Object> good = new LinkedHashMap<>();
        good.put("event_time", ISO_MICROS.format(time));
        good.put("amount", new BigDecimal("12.50"));
        good.put("tip", null);
        good.put("country", "DE");
        good.put("card_present", true);
        Map<String, byte[]> values = new LinkedHashMap<>();
        Map<String, String> reasons = new LinkedHashMap<>();
        String invalid = runId + "-badjson-invalid";
        values.put(invalid, ("{\"event_id\": \"" + invalid + "\", \"amount\": ").getBytes(StandardCharsets.UTF_8));
        reasons.put(invalid, "undecodable"); // not JSON at all: cut off
        String array = runId + "-badjson-array";
        values.put(array, Json.bytes(List.of(with(good, "event_id", array))));
        reasons.put(array, "undecodable"); // JSON, but an event is an object
        String text = runId + "-badjson-amount-text";
        values.put(text, Json.bytes(with(with(good, "event_id", text), "amount", "12.50")));
        reasons.put(text, "bad-type"); // amount must be a number, not a string
        String missing = runId + "-badjson-no-card-present";
        Map<String, Object> noCard = with(good, "event_id", missing);
        noCard.remove("card_present");
        values.put(missing, Json.bytes(noCard));
        reasons.put(missing, "missing-field");
        for (Map.Entry<String, byte[]> e : values.entrySet()) {
            send(topic, e.getKey(), e.getValue(), Map.of(EXPECT_REASON, reasons.get(e.getKey())));
        }
        return reasons;
    }

    private static Map<String, Object> with(Map<String, Object> values, String field, Object value) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("event_id", null); // the id first, as a producer would write it
        out.putAll(values);
        out.put(field, value);
        return out;
    }

    /** One record of each kind Driftline dead-letters; returns key to the reason it should give. */
    private Map<String, String> badRecords(String topic, String runId, Schemas.Encoder events, int features, long now) {
        byte[] good = events.encode(inputEvent(runId + "-bad-source", now, new float[features]));
        byte[] wrongFingerprint = good.clone();
        for (int i = 2; i < 10; i++) {
            wrongFingerprint[i] = (byte) ~wrongFingerprint[i];
        }
        float[] nan = new float[features];
        nan[0] = Float.NaN;
        Map<String, byte[]> values = new LinkedHashMap<>();
        Map<String, String> reasons = new LinkedHashMap<>();
        values.put("garbage", "\u0017not avro at all".getBytes(StandardCharsets.UTF_8));
        reasons.put("garbage", "undecodable");
        values.put("empty", new byte[0]);
        reasons.put("empty", "empty");
        values.put("truncated", Arrays.copyOf(good, 12));
        reasons.put("truncated", "undecodable");
        values.put("wrong-fingerprint", wrongFingerprint);
        reasons.put("wrong-fingerprint", "unknown-schema");
        values.put("wrong-length", events.encode(inputEvent(runId + "-bad-wrong-length", now, new float[features + 1])));
        reasons.put("wrong-length", "wrong-length");
        values.put("nan", events.encode(inputEvent(runId + "-bad-nan", now, nan)));
        reasons.put("nan", "non-finite");
        Map<String, String> byKey = new LinkedHashMap<>();
        for (Map.Entry<String, byte[]> e : values.entrySet()) {
            String key = runId + "-bad-" + e.getKey();
            String reason = reasons.get(e.getKey());
            send(topic, key, e.getValue(), Map.of(EXPECT_REASON, reason));
            byKey.put(key, reason);
        }
        return byKey;
    }

    static GenericRecord inputEvent(String id, long eventTimeMs, float[] features) {
        List<Float> values = new ArrayList<>(features.length);
        for (float f : features) {
            values.add(f);
        }
        GenericRecord event = new GenericData.Record(Schemas.INPUT_EVENT);
        event.put("event_id", id);
        event.put("event_time", eventTimeMs);
        event.put("features", values);
        event.put("source", "java-example");
        return event;
    }

    static GenericRecord label(String id, long eventTimeMs, int label) {
        GenericRecord record = new GenericData.Record(Schemas.LABEL);
        record.put("event_id", id);
        record.put("event_time", eventTimeMs);
        record.put("label", label);
        return record;
    }

    private static float[] agrawal(Random random, int count) {
        float[] out = new float[count];
        for (int i = 0; i < count; i++) {
            double[] range = AGRAWAL[i % AGRAWAL.length];
            out[i] = (float) (range[0] + random.nextDouble() * (range[1] - range[0]));
        }
        return out;
    }

    private static Map<String, Integer> perPartition(List<RecordMetadata> meta) {
        Map<String, Integer> counts = new TreeMap<>();
        for (RecordMetadata m : meta) {
            counts.merge(String.valueOf(m.partition()), 1, Integer::sum);
        }
        return counts;
    }

    private void send(String topic, String key, byte[] value, Map<String, String> headers) {
        ProducerRecord<byte[], byte[]> record =
                new ProducerRecord<>(topic, null, key.getBytes(StandardCharsets.UTF_8), value);
        headers.forEach((k, v) -> record.headers().add(k, v.getBytes(StandardCharsets.UTF_8)));
        sent.add(producer.send(record));
    }

    /** Wait for every record sent since the last flush to be acknowledged; their metadata, in order. */
    private List<RecordMetadata> flush() throws InterruptedException {
        producer.flush();
        List<RecordMetadata> out = new ArrayList<>(sent.size());
        for (Future<RecordMetadata> future : sent) {
            try {
                out.add(future.get(60, TimeUnit.SECONDS));
            } catch (ExecutionException e) {
                throw new IllegalStateException("the broker did not acknowledge a record: " + e.getCause(), e.getCause());
            } catch (TimeoutException e) {
                throw new IllegalStateException("no acknowledgement within 60 s: is the broker up?", e);
            }
        }
        sent.clear();
        return out;
    }

    @Override
    public void close() {
        producer.close(Duration.ofSeconds(30));
    }
}
