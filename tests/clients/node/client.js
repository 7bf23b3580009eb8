// A kafkajs client for the gateway's end-to-end tests: as one SCRAM-SHA-512 user it
// creates a topic, reads the topic's configuration, produces records, consumes them in
// a consumer group (committing what it read), and deletes the topic. It prints one JSON
// line with what it produced and received, which the test compares with the audit.
//
// Usage: node client.js BOOTSTRAP USER PASSWORD TOPIC GROUP RECORDS
'use strict';

const { Kafka, ConfigResourceTypes, logLevel } = require('kafkajs');

async function main([bootstrap, username, password, topic, groupId, count]) {
  const records = Number.parseInt(count, 10);
  const kafka = new Kafka({
    clientId: 'kafkajs-client',
    brokers: [bootstrap],
    sasl: { mechanism: 'scram-sha-512', username, password },
    logLevel: logLevel.WARN,
  });
  const result = { produced: 0, consumed: 0, configs_found: 0 };

  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }] });
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
  });
  for (const resource of described.resources) {
    if (resource.errorCode !== 0) throw new Error(`describe configs: ${resource.errorMessage}`);
    result.configs_found += resource.configEntries.length;
  }

  const producer = kafka.producer();
  await producer.connect();
  for (let i = 0; i < records; i += 1) {
    await producer.send({ topic, messages: [{ value: `node-${i}` }] });
    result.produced += 1;
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('records not consumed in 60 s')), 60000);
    consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        result.consumed += 1;
        await consumer.commitOffsets([
          { topic, partition, offset: (BigInt(message.offset) + 1n).toString() },
        ]);
        if (result.consumed >= records) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch(reject);
  });
  await consumer.disconnect();

  await admin.deleteTopics({ topics: [topic] });
  await admin.disconnect();
  console.log(JSON.stringify(result));
}

main(process.argv.slice(2)).catch((error) => {
  console.error(error);
  process.exit(1);
});
