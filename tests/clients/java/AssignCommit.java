// A Java consumer that uses assign() (no group membership), reads partition 0 of a topic
// until it has the expected number of records, and commits its position with
// commitSync(): the ordinary commit of Flink-style consumers, which the gateway must not
// take for an offset reset. Run by tests/integration/test_gateway_offsets.py with Kafka's
// own jars on the classpath (java's source-file mode).
//
// Arguments: bootstrap servers, client properties file (SASL), topic, group id, records.

import java.io.FileReader;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

public class AssignCommit {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileReader reader = new FileReader(args[1])) {
            props.load(reader);
        }
        props.put("bootstrap.servers", args[0]);
        props.put("group.id", args[3]);
        props.put("client.id", "java-assign-commit");
        props.put("enable.auto.commit", "false");
        props.put("auto.offset.reset", "earliest");
        String bytes = "org.apache.kafka.common.serialization.ByteArrayDeserializer";
        props.put("key.deserializer", bytes);
        props.put("value.deserializer", bytes);
        int wanted = Integer.parseInt(args[4]);
        int received = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(List.of(new TopicPartition(args[2], 0)));
            long deadline = System.currentTimeMillis() + 60_000;
            while (received < wanted && System.currentTimeMillis() < deadline) {
                received += consumer.poll(Duration.ofMillis(500)).count();
            }
            consumer.commitSync();
        }
        System.out.println(received);
    }
}
