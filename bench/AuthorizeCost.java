// What one authorize() call costs with kaudit's broker auditor and without: Kafka's
// StandardAuthorizer and kaudit.broker.AuditingAuthorizer (which delegates to one), each
// with the same ACL, asked the same question in a loop on one thread. Run from source by
// bench/broker_auditor.py (java -cp <kafka libs>:<plugin jar> bench/AuthorizeCost.java);
// prints one JSON line of median nanoseconds per call. A third authorizer is the plugin with
// counting switched off (kaudit.audit.include.data.access=false): bench/broker_auditor.py
// compares the plugin counting against it, so its cost over StandardAuthorizer's
// (`off_plain_ns`, produce only) is what that comparison leaves out.
//
// The plugin's decision topic points at a closed port, so its sender never sends: what is
// timed is the request path alone (the copy into the queue or the count), which is all the
// plugin adds to a request.

import java.net.InetAddress;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.common.ClusterResource;
import org.apache.kafka.common.Endpoint;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.metrics.Metrics;
import org.apache.kafka.common.metrics.Monitorable;
import org.apache.kafka.common.metrics.internals.PluginMetricsImpl;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.security.auth.KafkaPrincipal;
import org.apache.kafka.common.security.auth.SecurityProtocol;
import org.apache.kafka.metadata.authorizer.ClusterMetadataAuthorizer;
import org.apache.kafka.metadata.authorizer.StandardAcl;
import org.apache.kafka.metadata.authorizer.StandardAuthorizer;
import org.apache.kafka.server.authorizer.Action;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;
import org.apache.kafka.server.authorizer.AuthorizerServerInfo;

public class AuthorizeCost {

    static final Endpoint ENDPOINT =
            new Endpoint("SASL_PLAINTEXT", SecurityProtocol.SASL_PLAINTEXT, "127.0.0.1", 9092);

    static final class Context implements AuthorizableRequestContext {
        final KafkaPrincipal principal = new KafkaPrincipal("User", "alice");
        final InetAddress address = InetAddress.getLoopbackAddress();
        int correlation;
        final int api;

        Context(int api) {
            this.api = api;
        }

        public String listenerName() { return "SASL_PLAINTEXT"; }
        public SecurityProtocol securityProtocol() { return SecurityProtocol.SASL_PLAINTEXT; }
        public KafkaPrincipal principal() { return principal; }
        public InetAddress clientAddress() { return address; }
        public int requestType() { return api; }
        public int requestVersion() { return 9; }
        public String clientId() { return "bench"; }
        public int correlationId() { return correlation++; }
    }

    static ClusterMetadataAuthorizer authorizer(ClusterMetadataAuthorizer authorizer) {
        return authorizer(authorizer, Map.of());
    }

    static ClusterMetadataAuthorizer authorizer(
            ClusterMetadataAuthorizer authorizer, Map<String, Object> extra) {
        Map<String, Object> configs = new HashMap<>(extra);
        configs.put("super.users", "User:admin");
        configs.put("node.id", "1");
        configs.put("kaudit.audit.bootstrap.servers", "127.0.0.1:1");
        configs.put("kaudit.audit.principal", "User:kaudit-auditor");
        configs.put("kaudit.audit.producer.reconnect.backoff.ms", "60000");
        authorizer.configure(configs);
        // As the broker does (Plugin.wrapInstance): StandardAuthorizer counts its answers.
        ((Monitorable) authorizer).withPluginMetrics(
                new PluginMetricsImpl(new Metrics(), new LinkedHashMap<>()));
        authorizer.start(new AuthorizerServerInfo() {
            public ClusterResource clusterResource() { return new ClusterResource("bench"); }
            public int brokerId() { return 1; }
            public Collection<Endpoint> endpoints() { return List.of(ENDPOINT); }
            public Endpoint interBrokerEndpoint() { return ENDPOINT; }
            public Collection<String> earlyStartListeners() { return List.of(); }
        });
        for (AclOperation operation : List.of(AclOperation.WRITE, AclOperation.CREATE)) {
            authorizer.addAcl(Uuid.randomUuid(), new StandardAcl(ResourceType.TOPIC, "orders",
                    PatternType.LITERAL, "User:alice", "*", operation, AclPermissionType.ALLOW));
        }
        authorizer.completeInitialLoad();
        return authorizer;
    }

    static double nanosPerCall(ClusterMetadataAuthorizer authorizer, Context context,
            List<Action> actions, int calls) {
        long started = System.nanoTime();
        for (int i = 0; i < calls; i++) {
            if (authorizer.authorize(context, actions).isEmpty()) {
                throw new IllegalStateException("no result");
            }
        }
        return (System.nanoTime() - started) / (double) calls;
    }

    static double median(List<Double> values) {
        List<Double> sorted = new ArrayList<>(values);
        Collections.sort(sorted);
        return sorted.get(sorted.size() / 2);
    }

    public static void main(String[] args) throws Exception {
        int calls = args.length > 0 ? Integer.parseInt(args[0]) : 1_000_000;
        int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 5;
        ClusterMetadataAuthorizer plain = authorizer(new StandardAuthorizer());
        ClusterMetadataAuthorizer audited =
                authorizer((ClusterMetadataAuthorizer) Class.forName("kaudit.broker.AuditingAuthorizer")
                        .getDeclaredConstructor().newInstance());
        ClusterMetadataAuthorizer off =
                authorizer((ClusterMetadataAuthorizer) Class.forName("kaudit.broker.AuditingAuthorizer")
                        .getDeclaredConstructor().newInstance(),
                        Map.of("kaudit.audit.include.data.access", "false"));
        ResourcePattern orders = new ResourcePattern(ResourceType.TOPIC, "orders", PatternType.LITERAL);
        Map<String, Object[]> cases = new HashMap<>();
        // Produce: an allowed WRITE, counted per client and topic.
        cases.put("produce", new Object[] {new Context(0),
                List.of(new Action(AclOperation.WRITE, orders, 1, true, true))});
        // CreateTopics: an allowed CREATE, queued as a decision of its own.
        cases.put("create", new Object[] {new Context(19),
                List.of(new Action(AclOperation.CREATE, orders, 1, true, true))});
        StringBuilder out = new StringBuilder("{");
        for (String name : List.of("produce", "create")) {
            Context context = (Context) cases.get(name)[0];
            @SuppressWarnings("unchecked")
            List<Action> actions = (List<Action>) cases.get(name)[1];
            nanosPerCall(plain, context, actions, calls);
            nanosPerCall(audited, context, actions, calls);
            nanosPerCall(off, context, actions, calls);
            List<Double> plainNs = new ArrayList<>();
            List<Double> auditedNs = new ArrayList<>();
            List<Double> offNs = new ArrayList<>();
            for (int round = 0; round < rounds; round++) {
                plainNs.add(nanosPerCall(plain, context, actions, calls));
                auditedNs.add(nanosPerCall(audited, context, actions, calls));
                offNs.add(nanosPerCall(off, context, actions, calls));
            }
            if (out.length() > 1) {
                out.append(',');
            }
            out.append(String.format("\"%s_plain_ns\":%.1f,\"%s_plugin_ns\":%.1f,\"%s_off_ns\":%.1f",
                    name, median(plainNs), name, median(auditedNs), name, median(offNs)));
        }
        System.out.println(out.append('}'));
        audited.close();
        off.close();
        plain.close();
        System.exit(0);
    }
}
