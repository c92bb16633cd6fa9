/** The names the conformance suite's `server-stateless` scenario calls (its diagnostic fixture tools), and the entries they toggle. */
export const CONFORMANCE_FIXTURE = {
  missingCapability: 'test_missing_capability',
  streamingElicitation: 'test_streaming_elicitation',
  logging: 'test_logging_tool',
  triggerToolChange: 'test_trigger_tool_change',
  triggerPromptChange: 'test_trigger_prompt_change',
  dynamicTool: 'test_dynamic_tool',
  dynamicPrompt: 'test_dynamic_prompt',
} as const;

/** Which list changed; each MCP shape announces it on its open `subscriptions/listen` streams. */
export type ListKind = 'tools' | 'prompts';

/** Announces a changed list (the MCP SDK 2.x handler's `notify`, or mcp-nest's register/remove). */
export interface ListNotifier {
  toolsChanged(): void;
  promptsChanged(): void;
}

/**
 * Whether the toggled tool and prompt are present: the trigger fixtures really change a list before
 * they announce it, so a client that re-lists after `list_changed` sees the change.
 */
export class FixtureLists {
  private readonly present = new Set<ListKind>();

  has(kind: ListKind): boolean {
    return this.present.has(kind);
  }

  /** Adds the kind's entry when absent, removes it when present, announces the change; says which. */
  toggle(kind: ListKind, notifier: ListNotifier): string {
    const added = !this.present.delete(kind);
    if (added) this.present.add(kind);
    if (kind === 'tools') notifier.toolsChanged();
    else notifier.promptsChanged();
    return `${kind === 'tools' ? CONFORMANCE_FIXTURE.dynamicTool : CONFORMANCE_FIXTURE.dynamicPrompt} ${added ? 'added' : 'removed'}`;
  }
}
