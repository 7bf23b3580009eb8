package kaudit.broker;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.config.SaslConfigs;
import org.apache.kafka.common.config.types.Password;
import org.apache.kafka.common.security.JaasContext;
import org.apache.kafka.common.security.auth.KafkaPrincipal;
import org.apache.kafka.common.utils.SecurityUtils;

/**
 * The auditor's own settings: broker properties under {@code kaudit.audit.}.
 *
 * <ul>
 *   <li>{@code bootstrap.servers} (required): where the decision topic is;
 *   <li>{@code topic} ({@code __kaudit_broker_decisions}), {@code topic.partitions} (1),
 *       {@code topic.replication.factor} (-1: the broker's default), {@code topic.create}
 *       (true: create it when missing);
 *   <li>{@code producer.*}: extra producer settings (security, for instance);
 *   <li>{@code principal}: the principal the broker gives the auditor's own producer
 *       ({@code Type:name}). By default it is derived from {@code producer.*}: {@code
 *       User:<username>} of a PLAIN or SCRAM login; anything else (TLS certificates,
 *       Kerberos, OAuth, a custom principal builder) must name it. Over PLAINTEXT it must be
 *       named too: the broker would see the auditor as {@code User:ANONYMOUS}, as it sees
 *       every client of a PLAINTEXT listener, so naming it is the operator's statement that
 *       no client but the auditor (and the brokers) reaches that listener. Only this
 *       principal's WRITE, DESCRIBE and CREATE on the decision topic are left out (they would
 *       feed themselves); anyone else's WRITE there is recorded;
 *   <li>{@code hmac.key.file} (none): a file holding the key (its bytes, trailing
 *       whitespace left off; at least 16) of the HMAC-SHA256 the auditor puts on each
 *       record (header {@code kaudit-hmac}), so kaudit refuses records someone else wrote
 *       into the topic. Without it the records are unauthenticated: the broker log warns,
 *       and only the auditor's principal may be allowed WRITE on the topic;
 *   <li>{@code queue.capacity} (10000): decisions waiting to be sent; more are dropped and
 *       counted;
 *   <li>{@code aggregate.window.ms} (10000): produce, fetch and other allowed READ/WRITE
 *       decisions are counted per client and resource over this window;
 *   <li>{@code broker.principals} (none): the brokers' own principals ({@code Type:name},
 *       separated by {@code ;}). Their requests on the inter-broker and controller listeners
 *       are the inter-broker traffic left out unless {@code include.inter.broker}. A listener name
 *       alone proves nothing (in a single-listener cluster every client uses it), so with
 *       none named nothing is left out as inter-broker (replication is CLUSTER_ACTION, left
 *       out on its own);
 *   <li>{@code include.describe}, {@code include.cluster.action}, {@code include.inter.broker}
 *       (all false): record those allowed decisions too;
 *   <li>{@code include.super.users} (false): count super users' allowed produce and fetch
 *       (READ, WRITE, IDEMPOTENT_WRITE) too. Their management operations are recorded
 *       whatever this says: a stolen admin credential used directly must show;
 *   <li>{@code include.data.access} (true): count allowed produce and fetch (READ, WRITE,
 *       IDEMPOTENT_WRITE) at all. A dynamic broker config: {@code kafka-configs --alter
 *       --entity-type brokers --entity-default --add-config kaudit.audit.include.data.access=false}
 *       turns the counting off on a running cluster (under a load spike, or where only
 *       management operations and denials matter) and {@code =true} back on, without a
 *       restart. Off, bypass detection sees no produce or fetch; denials, management
 *       operations (that AlterConfigs itself included) and anyone else's write on the
 *       decision topic are recorded either way.
 * </ul>
 *
 * A bad value is a {@link ConfigException} naming the property and what it accepts, so the
 * broker refuses to start rather than run unaudited.
 */
final class AuditorConfig {

    static final String PREFIX = "kaudit.audit.";

    final String bootstrapServers;
    final String topic;
    final int topicPartitions;
    final short topicReplicationFactor;
    final boolean createTopic;
    final Map<String, Object> producer;
    final Principals ownPrincipal;
    final byte[] hmacKey;
    final Principals brokerPrincipals;
    final int queueCapacity;
    final long aggregateWindowMs;
    final boolean includeDescribe;
    final boolean includeClusterAction;
    final boolean includeInterBroker;
    final boolean includeSuperUsers;
    final boolean includeDataAccess;
    final Set<String> interBrokerListeners;
    final Set<String> controllerListeners;
    final String nodeId;

    private AuditorConfig(Map<String, ?> configs) {
        bootstrapServers = required(configs, "bootstrap.servers");
        topic = text(configs, "topic", "__kaudit_broker_decisions");
        topicPartitions = integer(configs, "topic.partitions", 1, 1);
        topicReplicationFactor = (short) integer(configs, "topic.replication.factor", -1, -1);
        createTopic = flag(configs, "topic.create", true);
        queueCapacity = integer(configs, "queue.capacity", 10_000, 1);
        aggregateWindowMs = integer(configs, "aggregate.window.ms", 10_000, 1);
        includeDescribe = flag(configs, "include.describe", false);
        includeClusterAction = flag(configs, "include.cluster.action", false);
        includeInterBroker = flag(configs, "include.inter.broker", false);
        includeSuperUsers = flag(configs, "include.super.users", false);
        includeDataAccess = includeDataAccess(configs);
        producer = new HashMap<>();
        String producerPrefix = PREFIX + "producer.";
        for (Map.Entry<String, ?> entry : configs.entrySet()) {
            if (entry.getKey().startsWith(producerPrefix)) {
                producer.put(entry.getKey().substring(producerPrefix.length()), entry.getValue());
            }
        }
        ownPrincipal = Principals.of(ownPrincipal(configs, producer));
        hmacKey = hmacKey(configs);
        brokerPrincipals = principals(configs, "broker.principals");
        // The brokers' own requests come in on the inter-broker and controller listeners.
        // Only their principals are left out there: a broker forwards clients' requests
        // (CreateTopics, CreateAcls...) to the controller with the client's principal,
        // address and correlation id, and those are recorded.
        interBrokerListeners = new HashSet<>();
        Object interBroker = configs.get("inter.broker.listener.name");
        if (interBroker == null) {
            interBroker = configs.get("security.inter.broker.protocol");
        }
        interBrokerListeners.add(interBroker == null ? "PLAINTEXT" : interBroker.toString().trim());
        controllerListeners = new HashSet<>();
        Object controllers = configs.get("controller.listener.names");
        if (controllers != null) {
            for (String name : controllers.toString().split(",")) {
                if (!name.isBlank()) {
                    controllerListeners.add(name.trim());
                }
            }
        }
        Object node = configs.get("node.id");
        nodeId = node == null ? "unknown" : node.toString();
    }

    static AuditorConfig from(Map<String, ?> configs) {
        return new AuditorConfig(configs);
    }

    /** The one setting a running broker may change ({@link AuditingAuthorizer#reconfigure}). */
    static final String INCLUDE_DATA_ACCESS = PREFIX + "include.data.access";

    static boolean includeDataAccess(Map<String, ?> configs) {
        return flag(configs, "include.data.access", true);
    }

    /** The principal of the auditor's own producer: the {@code principal} setting, else the
     * login its producer settings name. A client id proves nothing (the client picks it),
     * so the auditor's own traffic is told by this principal and the decision topic. */
    private static KafkaPrincipal ownPrincipal(Map<String, ?> configs, Map<String, Object> producer) {
        String name = PREFIX + "principal";
        Object explicit = configs.get(name);
        if (explicit != null && !explicit.toString().isBlank()) {
            try {
                return SecurityUtils.parseKafkaPrincipal(explicit.toString().trim());
            } catch (IllegalArgumentException e) {
                throw new ConfigException(name, explicit, "expected a principal Type:name, "
                        + "e.g. User:kaudit-auditor");
            }
        }
        String protocol = text(producer.get(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG), "PLAINTEXT")
                .toUpperCase(Locale.ROOT);
        if (protocol.equals("PLAINTEXT")) {
            throw new ConfigException(name, null, "the auditor's producer reaches the decision "
                    + "topic over PLAINTEXT (" + PREFIX + "producer.security.protocol), where the "
                    + "broker gives it User:ANONYMOUS, the principal of every client of that "
                    + "listener: their writes to the decision topic would pass as the auditor's "
                    + "own and go unrecorded. Give the auditor a login (" + PREFIX
                    + "producer.security.protocol=SASL_PLAINTEXT or SASL_SSL with PLAIN or SCRAM "
                    + "credentials in " + PREFIX + "producer.sasl.jaas.config), or, if only the "
                    + "brokers and the auditor can reach that listener, say so with " + name
                    + "=User:ANONYMOUS");
        }
        String mechanism = text(producer.get(SaslConfigs.SASL_MECHANISM), SaslConfigs.DEFAULT_SASL_MECHANISM);
        Object jaas = producer.get(SaslConfigs.SASL_JAAS_CONFIG);
        if (protocol.startsWith("SASL_") && jaas != null
                && (mechanism.equals("PLAIN") || mechanism.startsWith("SCRAM-"))) {
            Password password = jaas instanceof Password given ? given : new Password(jaas.toString());
            try {
                String username = JaasContext.configEntryOption(
                        JaasContext.loadClientContext(Map.of(SaslConfigs.SASL_JAAS_CONFIG, password))
                                .configurationEntries(),
                        "username", null);
                if (username != null && !username.isBlank()) {
                    return new KafkaPrincipal(KafkaPrincipal.USER_TYPE, username);
                }
            } catch (IllegalArgumentException e) {
                // reported below: the login cannot be read, so the principal must be named
            }
        }
        throw new ConfigException(name, null, "the auditor's own principal cannot be derived "
                + "from " + PREFIX + "producer.* (security.protocol " + protocol + ", sasl.mechanism "
                + mechanism + "): name it, e.g. User:kaudit-auditor, so that its own writes to "
                + "the decision topic are told apart from anyone else's");
    }

    /** The HMAC key from {@code hmac.key.file}, or null when none is set. */
    private static byte[] hmacKey(Map<String, ?> configs) {
        String name = PREFIX + "hmac.key.file";
        Object file = configs.get(name);
        if (file == null || file.toString().isBlank()) {
            return null;
        }
        byte[] key;
        try {
            key = Files.readAllBytes(Path.of(file.toString().trim()));
        } catch (IOException | RuntimeException e) {
            throw new ConfigException(name, file, "expected a readable file holding the HMAC "
                    + "key (" + e + ")");
        }
        int end = key.length;
        while (end > 0 && Character.isWhitespace(key[end - 1])) {
            end--;
        }
        if (end < 16) {
            throw new ConfigException(name, file, "expected a key of at least 16 bytes "
                    + "(e.g. 32 random bytes, hex or base64 encoded), got " + end);
        }
        return Arrays.copyOf(key, end);
    }

    private static Principals principals(Map<String, ?> configs, String name) {
        Object value = configs.get(PREFIX + name);
        if (value == null || value.toString().isBlank()) {
            return Principals.of(List.of());
        }
        try {
            return Principals.of(Arrays.stream(value.toString().split(";"))
                    .filter(entry -> !entry.isBlank())
                    .toList());
        } catch (IllegalArgumentException e) {
            throw new ConfigException(PREFIX + name, value,
                    "expected principals Type:name separated by ';', e.g. User:broker");
        }
    }

    private static String text(Object value, String fallback) {
        return value == null || value.toString().isBlank() ? fallback : value.toString().trim();
    }

    private static String required(Map<String, ?> configs, String name) {
        Object value = configs.get(PREFIX + name);
        if (value == null || value.toString().isBlank()) {
            throw new ConfigException(
                    PREFIX + name,
                    value,
                    "kaudit's broker auditor needs the bootstrap servers of the cluster that "
                            + "holds its decision topic (host:port[,host:port])");
        }
        return value.toString().trim();
    }

    private static String text(Map<String, ?> configs, String name, String fallback) {
        Object value = configs.get(PREFIX + name);
        return value == null || value.toString().isBlank() ? fallback : value.toString().trim();
    }

    private static int integer(Map<String, ?> configs, String name, int fallback, int min) {
        Object value = configs.get(PREFIX + name);
        if (value == null) {
            return fallback;
        }
        try {
            int parsed = Integer.parseInt(value.toString().trim());
            if (parsed >= min) {
                return parsed;
            }
        } catch (NumberFormatException e) {
            // reported below with what is accepted
        }
        throw new ConfigException(PREFIX + name, value, "expected an integer of at least " + min);
    }

    private static boolean flag(Map<String, ?> configs, String name, boolean fallback) {
        Object value = configs.get(PREFIX + name);
        if (value == null) {
            return fallback;
        }
        String text = value.toString().trim().toLowerCase(java.util.Locale.ROOT);
        if (text.equals("true") || text.equals("false")) {
            return Boolean.parseBoolean(text);
        }
        throw new ConfigException(PREFIX + name, value, "expected true or false");
    }
}
