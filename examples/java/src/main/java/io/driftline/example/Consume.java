package io.driftline.example;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * {@code consume}: reads the events topic (up to its end when the command starts), the predictions, the
 * dead letters, and optionally the labels and the drift alerts, until every event is answered or the
 * timeout passes, then a little longer to catch duplicates; then checks what Driftline promises.
 * An event's id is read from a canonical InputEvent or a Payment (single-object Avro) or a JSON object's
 * {@code event_id}; the summary counts events of each kind ({@code events_by_kind}: input_event, payment,
 * json, other), and how many of each were predicted and dead-lettered.
 *
 * <ul>
 *   <li>every event is answered exactly once: by one prediction, or by one dead letter;
 *   <li>each prediction, and each dead letter, is on its event's partition number;
 *   <li>each dead letter keeps the event's key and bytes and carries the documented {@code driftline.dlq.*}
 *       headers (UTF-8 text), naming the event's topic, partition and offset;
 *   <li>each label is on its event's partition number (same key, same partitioner).
 * </ul>
 */
final class Consume {
    static final String DLQ = "driftline.dlq.";
    static final List<String> DLQ_HEADERS =
            List.of("reason", "detail", "topic", "partition", "offset", "timestamp");
    private static final int SHOWN = 20;

    private record Pos(int partition, long offset) {}

    /** What an event's value is, as far as this consumer can tell (and so where its id comes from). */
    static final List<String> KINDS = List.of("input_event", "payment", "json", "other");

    private record Event(byte[] key, byte[] value, String id, String kind, String expectReason) {}

    private record DeadLetter(int partition, byte[] key, byte[] value, Map<String, String> headers) {}

    private final BinaryMessageDecoder<GenericRecord> events = Schemas.decoder(Schemas.INPUT_EVENT, "input_event");
    private final BinaryMessageDecoder<GenericRecord> payments = Schemas.decoder(Schemas.PAYMENT, "payment");
    private final BinaryMessageDecoder<GenericRecord> predictions = Schemas.decoder(Schemas.PREDICTION, "prediction");
    private final BinaryMessageDecoder<GenericRecord> labels = Schemas.decoder(Schemas.LABEL, "label");
    private final BinaryMessageDecoder<GenericRecord> alerts = Schemas.decoder(Schemas.DRIFT_ALERT, "drift_alert");

    private final String eventsTopic;
    private final String predictionsTopic;
    private final String deadLettersTopic;
    private final String labelsTopic;
    private final String alertsTopic;

    private final Map<Pos, Event> eventsByPos = new HashMap<>();
    private final Map<String, Pos> posById = new HashMap<>();
    private final Map<String, List<Integer>> predictionPartitions = new HashMap<>();
    private final Map<Pos, List<DeadLetter>> deadLettersByPos = new HashMap<>();
    private final List<DeadLetter> unplacedDeadLetters = new ArrayList<>();
    private final Map<String, Integer> labelPartitions = new HashMap<>();
    private final List<Map<String, Object>> driftAlerts = new ArrayList<>();
    private final List<String> problems = new ArrayList<>();
    private int predictionCount;
    private int deadLetterCount;
    private int unreadable;

    private Consume(Args args) {
        eventsTopic = args.required("events-topic");
        predictionsTopic = args.required("predictions-topic");
        deadLettersTopic = args.required("dead-letters-topic");
        labelsTopic = args.optional("labels-topic");
        alertsTopic = args.optional("drift-alerts-topic");
    }

    static Map<String, Object> run(Args args) {
        Consume state = new Consume(args);
        double timeoutS = args.number("timeout-s", 60);
        double settleS = args.number("settle-s", 1);
        Properties props = args.clientProperties();
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "driftline-java-example");
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed"); // serve --exactly-once writes in transactions
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        long started = System.nanoTime();
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> eventParts = partitions(consumer, state.eventsTopic);
            List<TopicPartition> all = new ArrayList<>(eventParts);
            for (String topic : Arrays.asList(state.predictionsTopic, state.deadLettersTopic, state.labelsTopic, state.alertsTopic)) {
                if (topic != null) {
                    all.addAll(partitions(consumer, topic));
                }
            }
            consumer.assign(all); // no group: read everything from the beginning, commit nothing
            consumer.seekToBeginning(all);
            Map<TopicPartition, Long> ends = consumer.endOffsets(eventParts, Duration.ofSeconds(30));
            long deadline = started + (long) (timeoutS * 1e9);
            long settleUntil = Long.MAX_VALUE;
            boolean complete = false;
            for (long now = System.nanoTime(); now < deadline && now < settleUntil; now = System.nanoTime()) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                    state.add(record);
                }
                if (!complete && state.allAnswered(consumer, ends)) {
                    complete = true;
                    settleUntil = System.nanoTime() + (long) (settleS * 1e9);
                }
            }
            Map<String, Object> summary = state.summary(ends);
            summary.put("complete_before_timeout", complete);
            summary.put("seconds", Math.round((System.nanoTime() - started) / 1e6) / 1e3);
            if (!complete) {
                summary.put("ok", false);
            }
            return summary;
        }
    }

    private static List<TopicPartition> partitions(KafkaConsumer<byte[], byte[]> consumer, String topic) {
        return consumer.partitionsFor(topic, Duration.ofSeconds(30)).stream()
                .map(p -> new TopicPartition(topic, p.partition()))
                .toList();
    }

    private void add(ConsumerRecord<byte[], byte[]> record) {
        String topic = record.topic();
        if (topic.equals(eventsTopic)) {
            Pos pos = new Pos(record.partition(), record.offset());
            Event event = event(record);
            String id = event.id();
            eventsByPos.put(pos, event);
            if (id != null && posById.put(id, pos) != null) {
                problems.add("two events share the id " + id);
            }
        } else if (topic.equals(predictionsTopic)) {
            predictionCount++;
            GenericRecord prediction = Schemas.decodeOrNull(predictions, record.value());
            if (prediction == null) {
                unreadable++;
                return;
            }
            String id = prediction.get("event_id").toString();
            predictionPartitions.computeIfAbsent(id, k -> new ArrayList<>()).add(record.partition());
        } else if (topic.equals(deadLettersTopic)) {
            deadLetterCount++;
            Map<String, String> dlq = new TreeMap<>();
            for (Header h : record.headers()) {
                if (h.key().startsWith(DLQ)) {
                    dlq.put(h.key(), h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8));
                }
            }
            DeadLetter dead = new DeadLetter(record.partition(), record.key(), record.value(), dlq);
            try {
                Pos source = new Pos(Integer.parseInt(dlq.get(DLQ + "partition")), Long.parseLong(dlq.get(DLQ + "offset")));
                deadLettersByPos.computeIfAbsent(source, k -> new ArrayList<>()).add(dead);
            } catch (NumberFormatException e) { // also a missing header: parseInt(null)
                unplacedDeadLetters.add(dead);
            }
        } else if (topic.equals(labelsTopic)) {
            GenericRecord label = Schemas.decodeOrNull(labels, record.value());
            if (label != null) {
                labelPartitions.put(label.get("event_id").toString(), record.partition());
            }
        } else if (topic.equals(alertsTopic)) {
            GenericRecord alert = Schemas.decodeOrNull(alerts, record.value());
            Map<String, Object> shown = new LinkedHashMap<>();
            if (alert != null) {
                for (String field : List.of("alert_id", "status", "kind", "severity", "model_version", "summary")) {
                    shown.put(field, String.valueOf(alert.get(field)));
                }
            }
            driftAlerts.add(shown);
        }
    }

    /**
     * An event and its id: a canonical InputEvent or a Payment (single-object Avro), or a JSON object with
     * a string {@code event_id}; anything else has no id and can only be answered by a dead letter.
     */
    private Event event(ConsumerRecord<byte[], byte[]> record) {
        String expect = header(record, Produce.EXPECT_REASON);
        GenericRecord canonical = Schemas.decodeOrNull(events, record.value());
        if (canonical != null) {
            return new Event(record.key(), record.value(), canonical.get("event_id").toString(), "input_event", expect);
        }
        GenericRecord payment = Schemas.decodeOrNull(payments, record.value());
        if (payment != null) {
            return new Event(record.key(), record.value(), payment.get("event_id").toString(), "payment", expect);
        }
        JsonNode json = Json.readObject(record.value());
        if (json != null) {
            JsonNode id = json.get("event_id");
            return new Event(record.key(), record.value(), id != null && id.isTextual() ? id.asText() : null, "json", expect);
        }
        return new Event(record.key(), record.value(), null, "other", expect);
    }

    private static String header(ConsumerRecord<byte[], byte[]> record, String name) {
        Header h = record.headers().lastHeader(name);
        return h == null || h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8);
    }

    private int answers(Pos pos, Event event) {
        List<Integer> predicted = event.id() == null ? null : predictionPartitions.get(event.id());
        List<DeadLetter> dead = deadLettersByPos.get(pos);
        return (predicted == null ? 0 : predicted.size()) + (dead == null ? 0 : dead.size());
    }

    private boolean allAnswered(KafkaConsumer<byte[], byte[]> consumer, Map<TopicPartition, Long> ends) {
        for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
            if (consumer.position(end.getKey(), Duration.ofSeconds(10)) < end.getValue()) {
                return false; // the events themselves are not all read yet
            }
        }
        for (Map.Entry<Pos, Event> e : eventsByPos.entrySet()) {
            if (e.getKey().offset() < ends.get(new TopicPartition(eventsTopic, e.getKey().partition()))
                    && answers(e.getKey(), e.getValue()) == 0) {
                return false;
            }
        }
        return true;
    }

    private Map<String, Object> summary(Map<TopicPartition, Long> ends) {
        int expected = 0;
        int unanswered = 0;
        int duplicated = 0;
        int predicted = 0;
        int misplaced = 0;
        int deadLettered = 0;
        int badDeadLetters = 0;
        List<Map<String, Object>> shown = new ArrayList<>();
        Map<String, Integer> reasons = new TreeMap<>();
        Map<String, Integer> byKind = new LinkedHashMap<>();
        Map<String, Integer> predictedByKind = new LinkedHashMap<>();
        Map<String, Integer> deadLetteredByKind = new LinkedHashMap<>();
        for (String kind : KINDS) {
            byKind.put(kind, 0);
            predictedByKind.put(kind, 0);
            deadLetteredByKind.put(kind, 0);
        }
        for (Map.Entry<Pos, Event> e : eventsByPos.entrySet()) {
            Pos pos = e.getKey();
            Event event = e.getValue();
            if (pos.offset() >= ends.get(new TopicPartition(eventsTopic, pos.partition()))) {
                continue; // written after the command started: not part of this check
            }
            expected++;
            byKind.merge(event.kind(), 1, Integer::sum);
            int n = answers(pos, event);
            if (n == 0) {
                unanswered++;
                problem("no answer for the event at " + pos + (event.id() == null ? "" : " (" + event.id() + ")"));
            } else if (n > 1) {
                duplicated++;
                problem(n + " answers for the event at " + pos + (event.id() == null ? "" : " (" + event.id() + ")"));
            }
            List<Integer> predictionParts = event.id() == null ? List.of() : predictionPartitions.getOrDefault(event.id(), List.of());
            predicted += predictionParts.isEmpty() ? 0 : 1;
            predictedByKind.merge(event.kind(), predictionParts.isEmpty() ? 0 : 1, Integer::sum);
            for (int partition : predictionParts) {
                if (partition != pos.partition()) {
                    misplaced++;
                    problem("the prediction for " + event.id() + " is on partition " + partition + ", its event on " + pos.partition());
                }
            }
            for (DeadLetter dead : deadLettersByPos.getOrDefault(pos, List.of())) {
                deadLettered++;
                deadLetteredByKind.merge(event.kind(), 1, Integer::sum);
                reasons.merge(String.valueOf(dead.headers().get(DLQ + "reason")), 1, Integer::sum);
                List<String> wrong = checkDeadLetter(pos, event, dead);
                badDeadLetters += wrong.isEmpty() ? 0 : 1;
                wrong.forEach(w -> problem("dead letter of " + pos + ": " + w));
                if (shown.size() < SHOWN) {
                    Map<String, Object> d = new LinkedHashMap<>();
                    d.put("key", dead.key() == null ? null : new String(dead.key(), StandardCharsets.UTF_8));
                    d.put("partition", dead.partition());
                    d.put("headers", dead.headers());
                    shown.add(d);
                }
            }
        }
        int unexpectedPredictions = 0;
        for (String id : predictionPartitions.keySet()) {
            if (!posById.containsKey(id)) {
                unexpectedPredictions++;
                problem("a prediction for " + id + ", which is no event read");
            }
        }
        int unexpectedDeadLetters = unplacedDeadLetters.size();
        for (Pos pos : deadLettersByPos.keySet()) {
            unexpectedDeadLetters += eventsByPos.containsKey(pos) ? 0 : 1;
        }
        if (unexpectedDeadLetters > 0) {
            problem(unexpectedDeadLetters + " dead letters name no event read");
        }
        int labelsMisplaced = 0;
        for (Map.Entry<String, Integer> label : labelPartitions.entrySet()) {
            Pos pos = posById.get(label.getKey());
            if (pos != null && pos.partition() != label.getValue()) {
                labelsMisplaced++;
                problem("the label of " + label.getKey() + " is on partition " + label.getValue() + ", its event on " + pos.partition());
            }
        }
        boolean once = unanswered == 0 && duplicated == 0 && unexpectedPredictions == 0 && unexpectedDeadLetters == 0;
        Map<String, Object> s = new LinkedHashMap<>();
        s.put("events", expected);
        s.put("predicted_events", predicted);
        s.put("dead_lettered_events", deadLettered);
        s.put("events_by_kind", byKind);
        s.put("predicted_by_kind", predictedByKind);
        s.put("dead_lettered_by_kind", deadLetteredByKind);
        s.put("predictions", predictionCount);
        s.put("dead_letters", deadLetterCount);
        s.put("labels", labelPartitions.size());
        s.put("drift_alerts", driftAlerts.size());
        s.put("answered_exactly_once", once);
        s.put("unanswered", unanswered);
        s.put("duplicated", duplicated);
        s.put("unexpected_predictions", unexpectedPredictions);
        s.put("unexpected_dead_letters", unexpectedDeadLetters);
        s.put("unreadable_predictions", unreadable);
        s.put("predictions_on_event_partition", misplaced == 0);
        s.put("misplaced_predictions", misplaced);
        s.put("dead_letters_as_documented", badDeadLetters == 0);
        s.put("dead_letter_reasons", reasons);
        s.put("labels_on_event_partition", labelsMisplaced == 0);
        s.put("dead_letter_samples", shown);
        s.put("drift_alert_samples", driftAlerts.subList(0, Math.min(SHOWN, driftAlerts.size())));
        s.put("problems", problems.subList(0, Math.min(SHOWN, problems.size())));
        s.put("ok", expected > 0 && once && misplaced == 0 && badDeadLetters == 0 && labelsMisplaced == 0
                && unreadable == 0 && problems.isEmpty());
        return s;
    }

    /** What is wrong with one dead letter, by the README's "Dead letters" section; empty when nothing. */
    private List<String> checkDeadLetter(Pos pos, Event event, DeadLetter dead) {
        List<String> wrong = new ArrayList<>();
        Map<String, String> h = dead.headers();
        for (String name : DLQ_HEADERS) {
            String value = h.get(DLQ + name);
            if (value == null || value.isEmpty()) {
                wrong.add("no " + DLQ + name + " header");
            }
        }
        if (!eventsTopic.equals(h.get(DLQ + "topic"))) {
            wrong.add(DLQ + "topic is " + h.get(DLQ + "topic"));
        }
        if (dead.partition() != pos.partition()) {
            wrong.add("on partition " + dead.partition() + ", its event on " + pos.partition());
        }
        if (!Arrays.equals(nonNull(dead.key()), nonNull(event.key()))) {
            wrong.add("the key differs from the event's");
        }
        if (!h.containsKey(DLQ + "reduced") && !Arrays.equals(nonNull(dead.value()), nonNull(event.value()))) {
            wrong.add("the value differs from the event's bytes");
        }
        if (event.expectReason() != null && !event.expectReason().equals(h.get(DLQ + "reason"))) {
            wrong.add("reason " + h.get(DLQ + "reason") + ", expected " + event.expectReason());
        }
        try {
            Long.parseLong(h.getOrDefault(DLQ + "timestamp", ""));
        } catch (NumberFormatException e) {
            wrong.add(DLQ + "timestamp is not a decimal number");
        }
        return wrong;
    }

    private static byte[] nonNull(byte[] bytes) {
        return bytes == null ? new byte[0] : bytes;
    }

    private void problem(String text) {
        problems.add(text);
    }
}
