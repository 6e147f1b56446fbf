package io.driftline.example;

import java.io.IOException;
import java.io.Reader;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;

/** Command-line options: {@code --name value} pairs and {@code --flag} switches. */
final class Args {
    private final Map<String, String> values = new HashMap<>();

    Args(String[] argv, int from) {
        for (int i = from; i < argv.length; i++) {
            String arg = argv[i];
            if (!arg.startsWith("--")) {
                throw new UsageException("unexpected argument: " + arg);
            }
            String name = arg.substring(2);
            boolean hasValue = i + 1 < argv.length && !argv[i + 1].startsWith("--");
            values.put(name, hasValue ? argv[++i] : "true");
        }
    }

    String required(String name) {
        String value = values.get(name);
        if (value == null) {
            throw new UsageException("--" + name + " is required");
        }
        return value;
    }

    String optional(String name) {
        return values.get(name);
    }

    String get(String name, String otherwise) {
        return values.getOrDefault(name, otherwise);
    }

    int integer(String name, int otherwise) {
        String value = values.get(name);
        try {
            return value == null ? otherwise : Integer.parseInt(value);
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " takes an integer, not " + value);
        }
    }

    double number(String name, double otherwise) {
        String value = values.get(name);
        try {
            return value == null ? otherwise : Double.parseDouble(value);
        } catch (NumberFormatException e) {
            throw new UsageException("--" + name + " takes a number, not " + value);
        }
    }

    /** Kafka client settings: {@code bootstrap.servers}, plus any {@code --client-properties FILE} (SASL, TLS, ...). */
    Properties clientProperties() {
        Properties props = new Properties();
        String file = values.get("client-properties");
        if (file != null) {
            try (Reader in = Files.newBufferedReader(Path.of(file))) {
                props.load(in);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read --client-properties " + file, e);
            }
        }
        props.put("bootstrap.servers", required("bootstrap-servers"));
        return props;
    }

    boolean flag(String name) {
        return Boolean.parseBoolean(values.getOrDefault(name, "false"));
    }

    /** A usage mistake: the message says which option to fix. */
    static final class UsageException extends RuntimeException {
        UsageException(String message) {
            super(message);
        }
    }
}
