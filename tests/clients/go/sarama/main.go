// A Sarama client for the gateway's end-to-end tests: as one SCRAM-SHA-512 user it
// creates a topic, reads the topic's configuration, produces records, consumes them in
// a consumer group (marking and committing what it read), and deletes the topic. It
// prints one JSON line with what it produced and received, which the test compares with
// the audit.
//
// Usage: kaudit-sarama-client BOOTSTRAP USER PASSWORD TOPIC GROUP RECORDS
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

type outcome struct {
	Produced     int `json:"produced"`
	Consumed     int `json:"consumed"`
	ConfigsFound int `json:"configs_found"`
}

// scramClient is the SCRAM conversation Sarama asks its user to provide (xdg-go/scram).
type scramClient struct {
	conversation *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	client, err := scram.HashGeneratorFcn(sha512.New).NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conversation = client.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conversation.Step(challenge) }
func (c *scramClient) Done() bool                            { return c.conversation.Done() }

// counter consumes until it has `wanted` records, marking each for commit.
type counter struct {
	mu       sync.Mutex
	received int
	wanted   int
	done     context.CancelFunc
}

func (h *counter) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *counter) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h *counter) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		session.MarkMessage(message, "")
		h.mu.Lock()
		h.received++
		enough := h.received >= h.wanted
		h.mu.Unlock()
		if enough {
			session.Commit()
			h.done()
			return nil
		}
	}
	return nil
}

func fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", step, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 7 {
		fail("usage", fmt.Errorf("BOOTSTRAP USER PASSWORD TOPIC GROUP RECORDS"))
	}
	brokers := []string{os.Args[1]}
	topic, group := os.Args[4], os.Args[5]
	records, err := strconv.Atoi(os.Args[6])
	if err != nil {
		fail("records", err)
	}
	config := sarama.NewConfig()
	config.Version = sarama.V3_6_0_0
	config.ClientID = "sarama-client"
	config.Net.SASL.Enable = true
	config.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
	config.Net.SASL.User, config.Net.SASL.Password = os.Args[2], os.Args[3]
	config.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{} }
	config.Producer.Return.Successes = true
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.AutoCommit.Enable = false

	admin, err := sarama.NewClusterAdmin(brokers, config)
	if err != nil {
		fail("admin", err)
	}
	detail := &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}
	if err := admin.CreateTopic(topic, detail, false); err != nil {
		fail("create topic", err)
	}
	var result outcome
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if err != nil {
		fail("describe configs", err)
	}
	result.ConfigsFound = len(entries)

	producer, err := sarama.NewSyncProducer(brokers, config)
	if err != nil {
		fail("producer", err)
	}
	for i := 0; i < records; i++ {
		message := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("sarama-%d", i))}
		if _, _, err := producer.SendMessage(message); err != nil {
			fail("produce", err)
		}
		result.Produced++
	}
	if err := producer.Close(); err != nil {
		fail("producer close", err)
	}

	consumer, err := sarama.NewConsumerGroup(brokers, group, config)
	if err != nil {
		fail("consumer group", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	consumed, stop := context.WithCancel(ctx)
	handler := &counter{wanted: records, done: stop}
	for consumed.Err() == nil {
		if err := consumer.Consume(consumed, []string{topic}, handler); err != nil {
			fail("consume", err)
		}
	}
	if ctx.Err() != nil {
		fail("consume", fmt.Errorf("%d of %d records in 60 s", handler.received, records))
	}
	if err := consumer.Close(); err != nil {
		fail("consumer close", err)
	}
	result.Consumed = handler.received

	if err := admin.DeleteTopic(topic); err != nil {
		fail("delete topic", err)
	}
	if err := admin.Close(); err != nil {
		fail("admin close", err)
	}
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}
