package kaudit.broker;

import java.net.InetAddress;
import java.util.Objects;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.security.auth.KafkaPrincipal;
import org.apache.kafka.server.authorizer.Action;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;

/**
 * Allowed READ/WRITE decisions of one client on one resource, counted over a window (as
 * kaudit's gateway counts produce and fetch). {@link #hit} and {@link #drain} hold the
 * tally's own lock: a request thread counts without the map's lock, and a count is never
 * lost between a window and the next. A tally the sender removed while idle is
 * {@code retired}: a late {@link #hit} on it says so, and the caller counts in a new one.
 */
final class Tally {

    /** Who counts towards one tally: the client (principal, address, listener, client id),
     * the API and the operation on the resource. Made of Kafka's own objects.
     *
     * <p>A request thread looks its tally up with a {@link #probe()} of its own, refilled
     * for each decision ({@link #fill}), so the produce/fetch path allocates nothing; the
     * map only ever holds {@link #copy() copies}, which never change. */
    static final class Key {
        private KafkaPrincipal principal;
        private InetAddress address;
        private String listener;
        private String clientId;
        private int apiKey;
        private AclOperation operation;
        private ResourceType resourceType;
        private String resourceName;
        private PatternType patternType;
        private int hash;

        private static final ThreadLocal<Key> PROBES = ThreadLocal.withInitial(Key::new);

        /** This thread's reusable lookup key. */
        static Key probe() {
            return PROBES.get();
        }

        Key fill(AuthorizableRequestContext context, Action action) {
            ResourcePattern resource = action.resourcePattern();
            principal = context.principal();
            address = context.clientAddress();
            listener = context.listenerName();
            clientId = context.clientId();
            apiKey = context.requestType();
            operation = action.operation();
            resourceType = resource.resourceType();
            resourceName = resource.name();
            patternType = resource.patternType();
            int h = Objects.hashCode(principal);
            h = 31 * h + Objects.hashCode(address);
            h = 31 * h + Objects.hashCode(listener);
            h = 31 * h + Objects.hashCode(clientId);
            h = 31 * h + apiKey;
            h = 31 * h + operation.ordinal();
            h = 31 * h + resourceType.ordinal();
            h = 31 * h + Objects.hashCode(resourceName);
            hash = 31 * h + patternType.ordinal();
            return this;
        }

        /** An unchanging copy, to be kept in the map. */
        Key copy() {
            Key key = new Key();
            key.principal = principal;
            key.address = address;
            key.listener = listener;
            key.clientId = clientId;
            key.apiKey = apiKey;
            key.operation = operation;
            key.resourceType = resourceType;
            key.resourceName = resourceName;
            key.patternType = patternType;
            key.hash = hash;
            return key;
        }

        @Override
        public int hashCode() {
            return hash;
        }

        @Override
        public boolean equals(Object other) {
            return other instanceof Key key
                    && hash == key.hash
                    && apiKey == key.apiKey
                    && operation == key.operation
                    && resourceType == key.resourceType
                    && patternType == key.patternType
                    && Objects.equals(resourceName, key.resourceName)
                    && Objects.equals(principal, key.principal)
                    && Objects.equals(address, key.address)
                    && Objects.equals(listener, key.listener)
                    && Objects.equals(clientId, key.clientId);
        }
    }

    /** One window's count, taken when the window closes. */
    record Snapshot(Decision sample, long count, long firstMs, long lastMs) {}

    private final Decision sample;
    private long count;
    private long firstMs;
    private long lastMs;
    private boolean retired;

    Tally(Decision sample) {
        this.sample = sample;
    }

    /** Counts one decision at `nowMs`; false (nothing counted) if this tally was retired. */
    synchronized boolean hit(long nowMs) {
        if (retired) {
            return false;
        }
        if (count == 0) {
            firstMs = nowMs;
        }
        count++;
        lastMs = nowMs;
        return true;
    }

    /** This window's count, reset for the next; null when there was none, and the tally
     * is then retired (its caller removes it from the map). */
    synchronized Snapshot drain() {
        if (count == 0) {
            retired = true;
            return null;
        }
        Snapshot snapshot = new Snapshot(sample, count, firstMs, lastMs);
        count = 0;
        return snapshot;
    }
}
