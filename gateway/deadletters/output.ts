/**
 * Writing the dead-letters command's output as it goes: text lines, or one JSON document whose
 * array is written item by item (memory stays bounded whatever the stream holds).
 */
export interface Output {
  write(text: string): unknown;
}

/** `{ ...head, <key>: [items...], ...tail }`, written incrementally. */
export class JsonDocument {
  private first = true;

  constructor(
    private readonly out: Output,
    head: Record<string, unknown>,
    key: string,
  ) {
    const open = JSON.stringify(head);
    out.write(`${open.length > 2 ? `${open.slice(0, -1)},` : '{'}${JSON.stringify(key)}:[`);
  }

  item(value: unknown): void {
    this.out.write(`${this.first ? '\n' : ',\n'}${JSON.stringify(value)}`);
    this.first = false;
  }

  end(tail: Record<string, unknown> = {}): void {
    const close = JSON.stringify(tail);
    this.out.write(`\n]${close.length > 2 ? `,${close.slice(1)}` : '}'}\n`);
  }
}
