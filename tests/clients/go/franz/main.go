// A franz-go client for the gateway's end-to-end tests: as one SCRAM-SHA-512 user it
// creates a topic, reads the topic's configuration, produces records, consumes them in
// a consumer group (committing what it read), and deletes the topic. It prints one JSON
// line with what it produced and received, which the test compares with the audit.
//
// Usage: kaudit-franz-client BOOTSTRAP USER PASSWORD TOPIC GROUP RECORDS
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

type outcome struct {
	Produced     int `json:"produced"`
	Consumed     int `json:"consumed"`
	ConfigsFound int `json:"configs_found"`
}

func fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", step, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 7 {
		fail("usage", fmt.Errorf("BOOTSTRAP USER PASSWORD TOPIC GROUP RECORDS"))
	}
	bootstrap, user, password, topic, group := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	records, err := strconv.Atoi(os.Args[6])
	if err != nil {
		fail("records", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	auth := kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism())
	common := []kgo.Opt{kgo.SeedBrokers(bootstrap), auth, kgo.ClientID("franz-go-client")}

	client, err := kgo.NewClient(common...)
	if err != nil {
		fail("client", err)
	}
	admin := kadm.NewClient(client)
	if _, err := admin.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		fail("create topic", err)
	}
	configs, err := admin.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		fail("describe configs", err)
	}
	var result outcome
	for _, resource := range configs {
		if resource.Err != nil {
			fail("describe configs", resource.Err)
		}
		result.ConfigsFound += len(resource.Configs)
	}
	for i := 0; i < records; i++ {
		value := []byte(fmt.Sprintf("go-%d", i))
		if err := client.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
			fail("produce", err)
		}
		result.Produced++
	}
	client.Close()

	consumer, err := kgo.NewClient(append(common,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)...)
	if err != nil {
		fail("consumer", err)
	}
	for result.Consumed < records {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			fail("consume", err)
		}
		fetches.EachError(func(t string, p int32, err error) { fail("fetch", err) })
		result.Consumed += fetches.NumRecords()
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		fail("commit", err)
	}
	consumer.Close()

	client, err = kgo.NewClient(common...)
	if err != nil {
		fail("client", err)
	}
	defer client.Close()
	deleted, err := kadm.NewClient(client).DeleteTopics(ctx, topic)
	if err == nil {
		err = deleted.Error()
	}
	if err != nil {
		fail("delete topic", err)
	}
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}
