package kaudit.broker;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.metrics.Gauge;
import org.apache.kafka.common.metrics.PluginMetrics;
import org.apache.kafka.common.security.auth.KafkaPrincipal;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.apache.kafka.server.authorizer.Action;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;
import org.apache.kafka.server.authorizer.AuthorizationResult;
import org.apache.kafka.server.authorizer.AuthorizerServerInfo;

/**
 * The request-path side of the auditor: which decisions are kept, and where they wait.
 *
 * <p>Kept by default: every denial Kafka would log ({@code logIfDenied}) and every allowed
 * management operation (CREATE, DELETE, ALTER, ALTER_CONFIGS...). Allowed READ, WRITE and
 * IDEMPOTENT_WRITE (produce, fetch, group traffic) are counted per client and resource and
 * sent once per window. DESCRIBE, DESCRIBE_CONFIGS, CLUSTER_ACTION, the brokers' own
 * principals on the inter-broker and controller listeners, and super users' produce and
 * fetch counts are left out unless {@link AuditorConfig} includes them (super users'
 * management operations are always kept: a stolen admin credential must show).
 *
 * <p>The auditor's own sending is told by its principal ({@link AuditorConfig#ownPrincipal})
 * and the resource, never by client id (which the client picks): only that principal's
 * WRITE, DESCRIBE and CREATE on the decision topic are left out, as recording them would
 * feed themselves. Anyone else's allowed WRITE on the decision topic is recorded one by
 * one, never just counted: it is someone writing into the auditor's own records.
 *
 * <p>One request, one denial per resource: Kafka checks DESCRIBE on a resource to decide
 * whether to reveal that it exists, then the operation itself (DeleteTopics on a KRaft
 * controller), in two {@code authorize()} calls of the same request. So a DESCRIBE denial is
 * held, per request thread, until that thread's next decision: refused again on the same
 * resource by the same request (the same context object), the two make one record with
 * {@code also_denied}; anything else sends the held denial as it was. The sender releases
 * denials held longer than {@link #HOLD_MS}, so none waits on a thread that went quiet.
 *
 * <p>Nothing here blocks or throws: a decision goes into a bounded queue with {@code offer}
 * (a full queue drops it and counts the drop), a counted one into a concurrent map.
 */
final class DecisionRecorder {

    static final long HOLD_MS = 50;
    private static final Logger LOG = LoggerFactory.getLogger(DecisionRecorder.class);

    /** The DESCRIBE denials one request thread holds (owned by whoever removed it from
     * {@link #held}: that thread, or the sender releasing it). */
    static final class Held {
        final AuthorizableRequestContext context;
        final long sinceMs;
        final LinkedHashMap<ResourcePattern, Decision> denials = new LinkedHashMap<>();

        Held(AuthorizableRequestContext context, long sinceMs) {
            this.context = context;
            this.sinceMs = sinceMs;
        }
    }

    final ConcurrentHashMap<Thread, Held> held = new ConcurrentHashMap<>();

    private final AuditorConfig config;
    private final Principals superUsers;
    final ArrayBlockingQueue<Decision> queue;
    final ConcurrentHashMap<Tally.Key, Tally> tallies = new ConcurrentHashMap<>();
    final AtomicLong dropped = new AtomicLong();
    final AtomicLong observeErrors = new AtomicLong();
    private DecisionSender sender;
    /** {@link AuditorConfig#includeDataAccess}, changed on a running broker. */
    private volatile boolean includeDataAccess;

    DecisionRecorder(AuditorConfig config, Set<String> superUsers) {
        this.config = config;
        this.includeDataAccess = config.includeDataAccess;
        this.superUsers = Principals.of(superUsers);
        this.queue = new ArrayBlockingQueue<>(config.queueCapacity);
    }

    void start(AuthorizerServerInfo serverInfo) {
        // A controller's authorizer serves only controller listeners; a broker's serves clients.
        boolean controllerOnly = !serverInfo.endpoints().isEmpty()
                && serverInfo.endpoints().stream()
                        .allMatch(e -> config.controllerListeners.contains(e.listener()));
        if (!config.includeInterBroker && config.brokerPrincipals.isEmpty()) {
            LOG.info("kaudit broker auditor: {}broker.principals is not set, so no request is "
                    + "left out as inter-broker traffic (CLUSTER_ACTION, replication, is left "
                    + "out on its own); name the brokers' own principals to leave theirs out",
                    AuditorConfig.PREFIX);
        } else if (!config.includeInterBroker) {
            LOG.info("kaudit broker auditor: requests of {} on listener(s) {} and {} are left "
                    + "out as inter-broker traffic", config.brokerPrincipals,
                    config.interBrokerListeners, config.controllerListeners);
        }
        sender = new DecisionSender(config, this, serverInfo.brokerId(),
                controllerOnly ? "controller" : "broker");
        sender.start();
    }

    void includeDataAccess(boolean include) {
        includeDataAccess = include;
    }

    void observe(
            AuthorizableRequestContext context, List<Action> actions, List<AuthorizationResult> results) {
        try {
            // Counting off: a request of allowed produce and fetch alone costs no more than this
            // check (a DESCRIBE denial this thread holds is released by the sender).
            if (!includeDataAccess && dataAccessOnly(actions, results)) {
                return;
            }
            Held pending = held.isEmpty() ? null : held.remove(Thread.currentThread());
            if (pending != null && pending.context != context) {
                enqueue(pending.denials.values());
                pending = null;
            }
            KafkaPrincipal principal = context.principal();
            if (!config.includeInterBroker
                    && config.brokerPrincipals.contains(principal)
                    && (config.interBrokerListeners.contains(context.listenerName())
                            || config.controllerListeners.contains(context.listenerName()))) {
                return;
            }
            long now = System.currentTimeMillis();
            for (int i = 0; i < actions.size(); i++) {
                Action action = actions.get(i);
                boolean allowed = results.get(i) == AuthorizationResult.ALLOWED;
                if (onDecisionTopic(action)) {
                    if (config.ownPrincipal.contains(principal)
                            && ownOperation(action.operation())) {
                        continue;  // the auditor's own sending: recording it would feed itself
                    }
                    if (allowed && action.operation() == AclOperation.WRITE) {
                        // Someone else writing into the auditor's topic: never just counted.
                        enqueue(new Decision(now, context, action, true));
                        continue;
                    }
                }
                if (!wanted(action, allowed)) {
                    continue;
                }
                Decision described = pending == null ? null : pending.denials.remove(action.resourcePattern());
                if (described != null && !allowed) {
                    // The same request refused again on the resource: one denial.
                    enqueue(new Decision(now, context, action, false, described.operation));
                    continue;
                }
                if (described != null) {
                    enqueue(described);  // refused DESCRIBE, allowed operation: both stand
                }
                if (!allowed && action.operation() == AclOperation.DESCRIBE) {
                    if (pending == null) {
                        pending = new Held(context, now);
                    }
                    Decision again = pending.denials.put(action.resourcePattern(),
                            new Decision(now, context, action, false));
                    if (again != null) {
                        enqueue(again);
                    }
                } else if (allowed && counted(action.operation())) {
                    if (config.includeSuperUsers || !superUsers.contains(principal)) {
                        count(context, action, now);
                    }
                } else {
                    enqueue(new Decision(now, context, action, allowed));
                }
            }
            if (pending != null && !pending.denials.isEmpty()) {
                held.put(Thread.currentThread(), pending);
            }
        } catch (RuntimeException e) {
            // The audit must never change the authorizer's answer; counted and reported.
            observeErrors.incrementAndGet();
        }
    }

    /** Produce and fetch: a count under a key of the objects Kafka already made. A key
     * seen before is counted without allocating or taking the map's lock; a decision is
     * copied out only for a key's first request (or after its idle tally was removed). */
    private void count(AuthorizableRequestContext context, Action action, long now) {
        Tally.Key probe = Tally.Key.probe().fill(context, action);
        Tally known = tallies.get(probe);
        if (known != null && known.hit(now)) {
            return;
        }
        tallies.compute(probe.copy(), (key, tally) -> {
            if (tally != null && tally.hit(now)) {
                return tally;
            }
            Tally fresh = new Tally(new Decision(now, context, action, true));
            fresh.hit(now);
            return fresh;
        });
    }

    private void enqueue(Decision decision) {
        if (!queue.offer(decision)) {
            dropped.incrementAndGet();
        }
    }

    private void enqueue(Iterable<Decision> decisions) {
        for (Decision decision : decisions) {
            enqueue(decision);
        }
    }

    /** Queues the denials held since before {@code cutoffMs} (all, with Long.MAX_VALUE). */
    void releaseHeld(long cutoffMs) {
        for (var entry : held.entrySet()) {
            Held pending = entry.getValue();
            if (pending.sinceMs < cutoffMs && held.remove(entry.getKey(), pending)) {
                enqueue(pending.denials.values());
            }
        }
    }

    private boolean wanted(Action action, boolean allowed) {
        AclOperation operation = action.operation();
        if (operation == AclOperation.CLUSTER_ACTION && !config.includeClusterAction) {
            return false;
        }
        if (!allowed) {
            return action.logIfDenied();
        }
        if (!action.logIfAllowed()) {
            return false;
        }
        if (operation == AclOperation.DESCRIBE || operation == AclOperation.DESCRIBE_CONFIGS) {
            return config.includeDescribe;
        }
        return true;
    }

    /** Allowed READ, WRITE and IDEMPOTENT_WRITE alone, none on the decision topic. */
    private boolean dataAccessOnly(List<Action> actions, List<AuthorizationResult> results) {
        for (int i = 0; i < actions.size(); i++) {
            Action action = actions.get(i);
            if (results.get(i) != AuthorizationResult.ALLOWED
                    || !counted(action.operation())
                    || onDecisionTopic(action)) {
                return false;
            }
        }
        return true;
    }

    private boolean onDecisionTopic(Action action) {
        ResourcePattern pattern = action.resourcePattern();
        return pattern.resourceType() == ResourceType.TOPIC && pattern.name().equals(config.topic);
    }

    /** What the auditor's own clients do on its topic: create it, look it up, write to it. */
    private static boolean ownOperation(AclOperation operation) {
        return operation == AclOperation.WRITE
                || operation == AclOperation.DESCRIBE
                || operation == AclOperation.CREATE;
    }

    private static boolean counted(AclOperation operation) {
        return operation == AclOperation.READ
                || operation == AclOperation.WRITE
                || operation == AclOperation.IDEMPOTENT_WRITE;
    }

    /** The counts of the window now ending, each reset (idle ones removed). */
    List<Tally.Snapshot> drainTallies() {
        List<Tally.Snapshot> out = new ArrayList<>();
        for (Tally.Key key : tallies.keySet()) {
            tallies.computeIfPresent(key, (k, tally) -> {
                Tally.Snapshot snapshot = tally.drain();
                if (snapshot == null) {
                    return null;
                }
                out.add(snapshot);
                return tally;
            });
        }
        return out;
    }

    void registerMetrics(PluginMetrics metrics) {
        gauge(metrics, "decisions-dropped-total",
                "Decisions dropped because the auditor's queue was full", dropped::get);
        gauge(metrics, "decisions-queued", "Decisions waiting to be sent", () -> (long) queue.size());
        gauge(metrics, "decisions-observe-errors-total",
                "Decisions the auditor failed to copy (the authorizer's answer stood)",
                observeErrors::get);
        gauge(metrics, "decisions-sent-total", "Decision records acknowledged by Kafka",
                () -> sender == null ? 0L : sender.sent.get());
        gauge(metrics, "decisions-send-failed-total", "Decision records Kafka did not acknowledge",
                () -> sender == null ? 0L : sender.failed.get());
    }

    private static void gauge(
            PluginMetrics metrics, String name, String description, java.util.function.LongSupplier value) {
        metrics.addMetric(
                metrics.metricName(name, description, new LinkedHashMap<>()),
                (Gauge<Long>) (metricConfig, now) -> value.getAsLong());
    }

    void close() {
        if (sender != null) {
            sender.close();
        }
    }
}
