// What a Mastra agent would make of stored messages: reads one JSON array of MastraDBMessages on
// stdin (as the TS ConvexStore's listMessages returns them), loads them into @mastra/core's
// MessageList as memory, and prints {"prompt": <aiV5 llmPrompt>} — the prompt a Mastra agent sends,
// with file URLs downloaded as Mastra does (bytes printed as {"base64": ...}).
import { MessageList } from "@mastra/core/agent/message-list";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const messages = JSON.parse(input).map((m) => ({ ...m, createdAt: new Date(m.createdAt) }));
const first = messages[0] ?? {};
const list = new MessageList({ threadId: first.threadId, resourceId: first.resourceId });
list.add(messages, "memory");
const prompt = await list.get.all.aiV5.llmPrompt();
const bytes = (key, value) =>
  value instanceof Uint8Array ? { base64: Buffer.from(value).toString("base64") } : value;
process.stdout.write(JSON.stringify({ prompt }, bytes) + "\n");
