package kaudit.broker;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The auditor's own thread: sends decision records to the decision topic, where kaudit reads
 * them (one JSON object per record, keyed by principal).
 *
 * <p>It first makes sure the topic is there (creating it when allowed), then drains the
 * queue, closes the counting windows, and reports drops: whenever the count of dropped
 * decisions has grown, a {@code dropped} record says by how much (and the broker log says it
 * too). The producer is idempotent with {@code acks=all}: a record it has had acknowledged
 * is on the topic's in-sync replicas and survives a broker restart. On close, what is queued
 * and counted is sent and flushed, within a bound.
 *
 * <p>Record kinds: {@code decision} (one decision, with its correlation id), {@code aggregate}
 * (a window's count of one client's allowed READ/WRITE on one resource: count, first_ms,
 * last_ms) and {@code dropped}. Each has an {@code id} unique to this run of this node
 * ({@code <node>-<run>-<n>}) so kaudit can drop a record it reads twice. With an HMAC key
 * ({@code hmac.key.file}) each record carries the HMAC-SHA256 of its value (hex) in the
 * {@code kaudit-hmac} header, so kaudit can refuse records someone else wrote.
 */
final class DecisionSender implements Runnable {

    private static final Logger LOG = LoggerFactory.getLogger(DecisionSender.class);
    /** Its clients' id prefix: for the broker's logs only; the client id proves nothing, so
     * the auditor's own traffic is never told by it. */
    static final String CLIENT_ID = "kaudit-broker-auditor";
    /** The record header holding the HMAC-SHA256 of the record's value, hex encoded. */
    static final String HMAC_HEADER = "kaudit-hmac";
    private static final String HMAC_ALGORITHM = "HmacSHA256";
    private static final int BATCH = 512;
    private static final long RETRY_MS = 500;
    private static final long RETRY_MAX_MS = 10_000;
    private static final Duration CLOSE_WAIT = Duration.ofSeconds(10);

    private final AuditorConfig config;
    private final DecisionRecorder recorder;
    private final int node;
    private final String role;
    private final String run = UUID.randomUUID().toString().substring(0, 8);
    private final Thread thread;
    /** Used on the sender's thread only (a Mac is not thread-safe). */
    private final Mac mac;
    private long sequence;
    private long reportedDrops;
    private volatile boolean closing;
    private KafkaProducer<String, String> producer;
    private boolean ready;
    private String lastProblem;
    private long retryMs = RETRY_MS;
    final AtomicLong sent = new AtomicLong();
    final AtomicLong failed = new AtomicLong();

    DecisionSender(AuditorConfig config, DecisionRecorder recorder, int node, String role) {
        this.config = config;
        this.mac = config.hmacKey == null ? null : hmac(config.hmacKey);
        if (mac == null) {
            LOG.warn("kaudit broker auditor: {}hmac.key.file is not set, so its decision records "
                    + "are unauthenticated: allow WRITE on topic {} to the auditor's principal "
                    + "({}) alone, or anyone who may write there can forge decisions",
                    AuditorConfig.PREFIX, config.topic, config.ownPrincipal);
        }
        this.recorder = recorder;
        this.node = node;
        this.role = role;
        this.thread = new Thread(this, "kaudit-broker-auditor-" + role + "-" + node);
        this.thread.setDaemon(true);
    }

    private static Mac hmac(byte[] key) {
        try {
            Mac mac = Mac.getInstance(HMAC_ALGORITHM);
            mac.init(new SecretKeySpec(key, HMAC_ALGORITHM));
            return mac;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HMAC-SHA256 is not available in this JVM", e);
        }
    }

    void start() {
        thread.start();
    }

    @Override
    public void run() {
        long nextWindow = System.currentTimeMillis() + config.aggregateWindowMs;
        List<Decision> batch = new ArrayList<>(BATCH);
        while (!closing) {
            try {
                if (!ready) {
                    ready = prepare();
                    if (!ready) {
                        // Doubling waits: an unreachable cluster costs the broker little.
                        pause(retryMs);
                        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
                        continue;
                    }
                }
                recorder.releaseHeld(System.currentTimeMillis() - DecisionRecorder.HOLD_MS);
                Decision first = recorder.queue.poll(100, TimeUnit.MILLISECONDS);
                if (first != null) {
                    batch.add(first);
                    recorder.queue.drainTo(batch, BATCH - 1);
                    for (Decision decision : batch) {
                        send(decision);
                    }
                    batch.clear();
                }
                long now = System.currentTimeMillis();
                if (now >= nextWindow) {
                    sendTallies();
                    nextWindow = now + config.aggregateWindowMs;
                }
                reportDrops();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } catch (RuntimeException e) {
                LOG.warn("kaudit broker auditor: sending decisions failed; retrying", e);
                pause(RETRY_MS);
            }
        }
        finish();
    }

    /** The producer made and the topic there; false (with the reason logged once) if not yet. */
    private boolean prepare() {
        if (producer == null) {
            producer = new KafkaProducer<>(producerConfig(), new StringSerializer(), new StringSerializer());
        }
        try (Admin admin = Admin.create(clientConfig("-admin"))) {
            if (config.createTopic) {
                try {
                    admin.createTopics(List.of(new NewTopic(config.topic,
                                    Optional.of(config.topicPartitions),
                                    Optional.of(config.topicReplicationFactor))))
                            .all().get(10, TimeUnit.SECONDS);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                }
            }
            admin.describeTopics(Set.of(config.topic)).allTopicNames().get(10, TimeUnit.SECONDS);
            LOG.info("kaudit broker auditor ({} {} run {}) sending decisions to topic {}",
                    role, node, run, config.topic);
            return true;
        } catch (ExecutionException | TimeoutException | RuntimeException e) {
            String problem = String.valueOf(e.getCause() == null ? e : e.getCause());
            if (!problem.equals(lastProblem)) {
                LOG.warn("kaudit broker auditor: decision topic {} not usable yet: {}", config.topic, problem);
                lastProblem = problem;
            }
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    private Map<String, Object> clientConfig(String suffix) {
        Map<String, Object> props = new HashMap<>(config.producer);
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, config.bootstrapServers);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG,
                CLIENT_ID + "-" + role + "-" + node + suffix);
        if (!suffix.isEmpty()) {
            // Producer-only settings mean nothing to the admin client.
            props.keySet().retainAll(AdminClientConfig.configNames());
        }
        return props;
    }

    private Map<String, Object> producerConfig() {
        Map<String, Object> props = clientConfig("");
        props.putIfAbsent(ProducerConfig.ACKS_CONFIG, "all");
        props.putIfAbsent(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, 20);
        props.putIfAbsent(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4");
        return props;
    }

    private void send(Decision decision) {
        Json json = header("decision", decision.timeMs);
        json.field("correlation_id", decision.correlationId);
        decision.writeRequest(json);
        produce(decision.principal, json.done());
    }

    private void sendTallies() {
        for (Tally.Snapshot tally : recorder.drainTallies()) {
            Json json = header("aggregate", tally.lastMs());
            json.field("count", tally.count())
                    .field("first_ms", tally.firstMs())
                    .field("last_ms", tally.lastMs());
            tally.sample().writeRequest(json);
            produce(tally.sample().principal, json.done());
        }
    }

    private void reportDrops() {
        long total = recorder.dropped.get();
        if (total == reportedDrops) {
            return;
        }
        long delta = total - reportedDrops;
        reportedDrops = total;
        LOG.warn("kaudit broker auditor: {} decisions dropped (queue of {} full); {} in all",
                delta, config.queueCapacity, total);
        Json json = header("dropped", System.currentTimeMillis());
        json.field("dropped", delta)
                .field("dropped_total", total)
                .field("queue_capacity", config.queueCapacity)
                .field("send_failed_total", failed.get());
        produce("kaudit", json.done());
    }

    private Json header(String kind, long timeMs) {
        return new Json()
                .field("kind", kind)
                .field("id", node + "-" + run + "-" + (++sequence))
                .field("node", node)
                .field("role", role)
                .field("time_ms", timeMs);
    }

    private void produce(String key, String value) {
        ProducerRecord<String, String> record = new ProducerRecord<>(config.topic, key, value);
        if (mac != null) {
            byte[] tag = mac.doFinal(value.getBytes(StandardCharsets.UTF_8));
            record.headers().add(HMAC_HEADER, HexFormat.of().formatHex(tag).getBytes(StandardCharsets.US_ASCII));
        }
        producer.send(record, (metadata, error) -> {
            if (error == null) {
                sent.incrementAndGet();
            } else if (failed.incrementAndGet() == 1) {
                LOG.error("kaudit broker auditor: a decision record was not acknowledged", error);
            }
        });
    }

    private void pause(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            closing = true;
        }
    }

    /** Send what is left and wait (boundedly) for it to be acknowledged. */
    private void finish() {
        if (producer == null) {
            return;
        }
        try {
            if (ready) {
                recorder.releaseHeld(Long.MAX_VALUE);
                List<Decision> rest = new ArrayList<>();
                recorder.queue.drainTo(rest);
                for (Decision decision : rest) {
                    send(decision);
                }
                sendTallies();
                reportDrops();
            }
        } catch (RuntimeException e) {
            LOG.warn("kaudit broker auditor: could not send the last decisions", e);
        } finally {
            producer.close(CLOSE_WAIT);
        }
    }

    void close() {
        closing = true;
        try {
            thread.join(CLOSE_WAIT.toMillis() * 2);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
