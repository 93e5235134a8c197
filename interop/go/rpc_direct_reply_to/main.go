// rpc_direct_reply_to: request/reply with RabbitMQ's direct reply-to. A server connection
// consumes a request queue and answers each request by publishing to its reply_to (which the
// broker has rewritten from "amq.rabbitmq.reply-to" to "amq.rabbitmq.reply-to.<opaque>"); the
// client consumes the pseudo-queue "amq.rabbitmq.reply-to" in no-ack mode on the channel it
// publishes the requests on, and matches replies by correlation_id. Publishing with
// reply_to="amq.rabbitmq.reply-to" on a channel that does not consume it closes that channel
// with 406 PRECONDITION_FAILED (the connection and its other channels stay usable).
package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	s "warren/interop/internal/scenario"
)

const (
	replyTo    = "amq.rabbitmq.reply-to"
	requests   = 5
	misuseText = "PRECONDITION_FAILED - fast reply consumer does not exist"
)

func main() {
	url := s.Start(30 * time.Second)
	server := s.Dial(url)
	client := s.Dial(url)

	sch := s.Channel(server)
	queue := s.UniqueName("rpc_direct_reply_to")
	_, err := sch.QueueDeclare(queue, false, true, false, false, nil)
	s.Must(err, "queue.declare %q", queue)
	var mu sync.Mutex
	received := []string{}
	sdeliveries := s.Consume(sch, queue, "", false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range sdeliveries {
			text := string(d.Body)
			mu.Lock()
			received = append(received, text)
			mu.Unlock()
			s.Check(strings.HasPrefix(d.ReplyTo, replyTo+"."),
				"request %q arrived with reply_to=%q; expected the broker to rewrite %q to %q", text, d.ReplyTo, replyTo, replyTo+".<opaque>")
			s.Publish(sch, "", d.ReplyTo, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: []byte(strings.ToUpper(text))})
			s.Must(d.Ack(false), "server: basic.ack")
		}
	}()

	cch := s.Channel(client)
	replies := s.Consume(cch, replyTo, "", true)
	call := func(corr, text string) {
		s.Publish(cch, "", queue, false, amqp.Publishing{ReplyTo: replyTo, CorrelationId: corr, Body: []byte(text)})
	}
	expected := map[string]string{}
	for i := 1; i <= requests; i++ {
		corr := fmt.Sprintf("req-%d", i)
		expected[corr] = fmt.Sprintf("REQUEST %d", i)
		call(corr, fmt.Sprintf("request %d", i))
	}
	got := map[string]string{}
	for len(got) < requests {
		d := s.Receive(replies, 10*time.Second, "%d replies (got %q)", requests, got)
		s.Check(!d.Redelivered, "reply %q has redelivered=true", d.Body)
		_, dup := got[d.CorrelationId]
		s.Check(!dup, "second reply for %q: %q", d.CorrelationId, d.Body)
		got[d.CorrelationId] = string(d.Body)
	}
	s.Check(fmt.Sprint(got) == fmt.Sprint(expected), "replies %q, expected %q", got, expected)
	fmt.Printf("%d replies by correlation id: ok\n", requests)

	// Misuse: reply_to=amq.rabbitmq.reply-to on a channel without the reply consumer.
	mch := s.Channel(client)
	closed := mch.NotifyClose(make(chan *amqp.Error, 1))
	s.Publish(mch, "", queue, false, amqp.Publishing{ReplyTo: replyTo, Body: []byte("misuse")})
	select {
	case e, ok := <-closed:
		s.Check(ok && e != nil, "the misusing channel was closed without a channel.close from the broker")
		fmt.Printf("misuse: channel closed %d %q\n", e.Code, e.Reason)
		s.Check(e.Code == 406, "misuse closed the channel with %d, expected 406 (%v)", e.Code, e)
		s.Check(e.Reason == misuseText, "misuse closed the channel with text %q, expected %q", e.Reason, misuseText)
	case <-time.After(5 * time.Second):
		s.Fail("publishing with reply_to=%s without consuming it did not close the channel within 5s", replyTo)
	}

	// The connection and the client's RPC channel still work.
	time.Sleep(100 * time.Millisecond)
	s.Check(!client.IsClosed(), "the client connection closed after the misuse")
	call("after", "after misuse")
	d := s.Receive(replies, 10*time.Second, "the reply after the misuse")
	s.Check(d.CorrelationId == "after" && string(d.Body) == "AFTER MISUSE", "reply after misuse: %q %q", d.CorrelationId, d.Body)
	mu.Lock()
	s.Check(len(received) == requests+1, "server got %q", received)
	for _, r := range received {
		s.Check(r != "misuse", "the misusing publish reached the request queue")
	}
	mu.Unlock()

	s.Must(cch.Close(), "closing the client channel")
	s.Must(client.Close(), "closing the client connection")
	_, err = sch.QueueDelete(queue, false, false, false)
	s.Must(err, "queue.delete %q", queue)
	<-done
	s.Must(server.Close(), "closing the server connection")
	fmt.Println("ok")
}
