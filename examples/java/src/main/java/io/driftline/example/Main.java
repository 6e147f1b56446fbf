package io.driftline.example;

import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.avro.Schema;

/**
 * Driftline from Java, with kafka-clients and Apache Avro only.
 *
 * <pre>
 * java -jar example.jar produce  --bootstrap-servers B --events-topic T [--count 1000] [--bad] [--labels-topic L]
 *                                [--run-id java] [--features 9] [--seed 1] [--json]
 * java -jar example.jar produce-payments --bootstrap-servers B --topic T [--count 100] [--json-count 0] [--bad-json]
 *                                [--run-id pay] [--seed 1] [--json]
 * java -jar example.jar consume  --bootstrap-servers B --events-topic T --predictions-topic P --dead-letters-topic D
 *                                [--labels-topic L] [--drift-alerts-topic A] [--timeout-s 60] [--settle-s 1] [--json]
 * java -jar example.jar fingerprints
 * </pre>
 *
 * Exit codes: 0 done (for {@code consume}: every check held), 1 a check failed, 2 a usage mistake, 3 an error.
 */
public final class Main {
    private static final String USAGE = """
            usage: java -jar example.jar COMMAND [OPTIONS]

              produce           canonical io.driftline.InputEvent events keyed by event id (murmur2 partitioner);
                                --bad adds one record of each kind Driftline dead-letters; --labels-topic L
                                adds an io.driftline.Label per event
                  --bootstrap-servers B --events-topic T [--count 1000] [--bad] [--labels-topic L]
                  [--run-id java] [--features 9] [--seed 1] [--json]
              produce-payments  records of the user schema com.example.payments.Payment (decimal amount,
                                nullable tip, country, card_present, timestamp-micros event_time), keyed by
                                event id (murmur2 partitioner); --json-count N adds N payments as JSON objects
                                (event_time an ISO-8601 UTC string, amount a number, tip a number or null);
                                --bad-json adds one JSON event of each kind Driftline dead-letters
                  --bootstrap-servers B --topic T [--count 100] [--json-count 0] [--bad-json]
                  [--run-id pay] [--seed 1] [--json]
              consume           read events (canonical, Payment or JSON), predictions, dead letters (and
                                labels, drift alerts) until every event is answered or --timeout-s passes;
                                check and print a summary
                  --bootstrap-servers B --events-topic T --predictions-topic P --dead-letters-topic D
                  [--labels-topic L] [--drift-alerts-topic A] [--timeout-s 60] [--settle-s 1] [--json]
              fingerprints      the single-object header (C3 01 + fingerprint) of each schema, as JSON

            --client-properties FILE adds Kafka client settings (Java properties: security.protocol,
            sasl.jaas.config, ...) to produce, produce-payments and consume.
            """;

    private Main() {}

    public static void main(String[] argv) {
        System.exit(run(argv));
    }

    static int run(String[] argv) {
        String command = argv.length == 0 ? "help" : argv[0];
        try {
            Args args = new Args(argv, 1);
            Map<String, Object> result = switch (command) {
                case "produce" -> Produce.events(args);
                case "produce-payments" -> Produce.payments(args);
                case "consume" -> Consume.run(args);
                case "fingerprints" -> fingerprints();
                case "help", "--help", "-h" -> {
                    System.out.print(USAGE);
                    yield null;
                }
                default -> throw new Args.UsageException("unknown command " + command);
            };
            if (result == null) {
                return 0;
            }
            print(command, result, args.flag("json") || command.equals("fingerprints"));
            return Boolean.FALSE.equals(result.get("ok")) ? 1 : 0;
        } catch (Args.UsageException e) {
            System.err.println("example: " + e.getMessage() + "\n\n" + USAGE);
            return 2;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            System.err.println("example: interrupted");
            return 3;
        } catch (RuntimeException e) {
            System.err.println("example: " + command + " failed: " + e);
            return 3;
        }
    }

    private static Map<String, Object> fingerprints() {
        Map<String, Object> out = new LinkedHashMap<>();
        for (Schema schema : Schemas.ALL) {
            out.put(schema.getFullName(), Schemas.hex(Schemas.header(schema)));
        }
        return out;
    }

    private static void print(String command, Map<String, Object> result, boolean json) {
        if (json) {
            System.out.println(Json.write(result));
            return;
        }
        System.out.println(command + ":");
        for (Map.Entry<String, Object> e : result.entrySet()) {
            System.out.println("  " + e.getKey() + ": " + Json.write(e.getValue()));
        }
    }
}
