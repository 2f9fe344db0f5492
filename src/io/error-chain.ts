/**
 * An error and its chain of causes on one line: how the command line and the
 * bench report a failure, so that scripts can log it and people can read it
 * without a stack trace.
 */
export function oneLine(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  while (current !== undefined && current !== null && parts.length < 5) {
    const message = current instanceof Error ? current.message : String(current);
    parts.push(message.split('\n')[0].trim());
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(': ');
}
