/**
 * Types of Footpath's command function, `ac(...)`, and of `install`, which puts the
 * snippet into the page from a bundled application.
 *
 * Every command is one overload of {@link Ac}, so that a misspelt command, an unknown
 * option or a callback that is not a function is refused by the compiler. The SDK
 * checks the same things at run time (and reports through the console and
 * `on('error')`), for pages that are not typed.
 */

/** A value of an event attribute: plain, or the Journey API's `{ dataType, value }`. */
export type AttributeValue =
  | string
  | number
  | boolean
  | { dataType: string; value: string | number | boolean };

/** Attributes of an event: names of letters, digits and `_`, at most 50 of them. */
export type Attributes = { [name: string]: AttributeValue };

/** A visitor's traits (`email`, `cellPhone`, `givenName`, `familyName`, `displayName`...). */
export type Traits = { [name: string]: string | number | boolean };

/** Copies an event attribute or a form field (`fieldName`) into a trait (`traitName`). */
export interface TraitMapping {
  fieldName: string;
  traitName: string;
}

/** The options of `ac('init', deploymentId, options)`. */
export interface InitOptions {
  /** Where events go; default: where the SDK was loaded from. An http(s) URL. */
  collectorUrl?: string;
  /** The domain of the visitor cookie; default: the page's host. */
  cookieDomain?: string;
  /** The visitor cookie's lifetime, 1 to 3650 days; default 365. */
  cookieExpiryDays?: number;
  /** Inactivity that ends a web session, above 0 and at most 1440 minutes; default 20. */
  sessionTimeoutMinutes?: number;
  /** Query parameters that carry a site-search term; default `['q']`. */
  searchQueryParameters?: string[];
  /** Query parameters removed from recorded URLs. */
  excludedQueryParameters?: string[];
  /** Whether recorded URLs keep their `#fragment`; default false. */
  keepUrlFragment?: boolean;
  /** Automatic page views; default `'auto'`. */
  pageview?: 'auto' | 'once' | 'off';
  /** Whether the visitor has agreed to tracking; default `'granted'`. */
  consent?: 'pending' | 'granted' | 'denied';
  /** Treat Global Privacy Control as a denial; default true. */
  honorGlobalPrivacyControl?: boolean;
  /** Treat Do Not Track as a denial; default false. */
  honorDoNotTrack?: boolean;
  /** Accepted for pages written for the Journey SDK; not applied yet. */
  globalTraitsMapper?: TraitMapping[];
  /** The Journey SDK's region: accepted and ignored (the collector URL says where). */
  region?: string;
}

/** The options of `ac('pageview', options)`. */
export interface PageviewOptions {
  /** The URL to record instead of the current one (single-page apps). */
  location?: string;
  title?: string;
  customAttributes?: Attributes;
  traitsMapper?: TraitMapping[];
}

/**
 * Told once whether the collector accepted a `record` or `identify` event:
 * `(null, { id })` when it did, `(error)` when it did not or the call was refused.
 */
export type DeliveryCallback = (error: Error | null, result?: { id: string }) => void;

/** The lifecycle events of `on`, `once` and `off`, and what their handlers receive. */
export interface EventHandlers {
  /** After `init`; a handler added later is called at once. */
  ready: () => void;
  'session:started': (event: { sessionId: string }) => void;
  'session:ended': (event: { sessionId: string }) => void;
  /** A refused command or a delivery problem; `message` is what the console shows. */
  error: (event: { command: string; message: string }) => void;
}

export type EventName = keyof EventHandlers;

/** One event of a plugin's list, with the attributes it records. */
export interface PluginEvent {
  eventName: string;
  customAttributes?: Attributes;
}

export interface ClickEvent extends PluginEvent {
  /** CSS selector of the elements whose clicks are recorded. */
  selector: string;
}

export interface IdleEvent extends PluginEvent {
  /** Seconds without interaction after which the event is recorded. */
  idleAfter: number;
}

export interface InViewportEvent extends PluginEvent {
  /** CSS selector of the elements whose appearance in the viewport is recorded. */
  selector: string;
}

export interface ScrollDepthEvent extends PluginEvent {
  /** How far down the page, 0 to 100. */
  percentage: number;
}

/** Each plugin of `ac('load', plugin, options)` and its options. */
export interface PluginOptions {
  autotrackClick: { clickEvents: ClickEvent[] };
  autotrackIdle: { idleEvents: IdleEvent[] };
  autotrackInViewport: { inViewportEvents: InViewportEvent[] };
  autotrackScrollDepth: { scrollDepthEvents: ScrollDepthEvent[] };
  /**
   * A page view on every History API navigation and `popstate`; `onUrlChange`, when
   * given, is called with the new URL instead.
   */
  autotrackUrlChange: { onUrlChange?: (url: string) => void };
}

export type PluginName = keyof PluginOptions;

/**
 * Called once the plugin runs. A plugin that cannot run (bad options) is reported on
 * the console and to `on('error')` handlers instead, and this is not called.
 */
export type LoadedCallback = () => void;

/** The options of `ac('forms:track', selector, options)`. */
export interface FormTrackOptions {
  /** The name events carry: `form_submitted` and `form_abandoned`. */
  formName: string;
  /** Record the form's fields with `form_submitted`. */
  captureFormDataOnSubmit?: boolean;
  /** Record the fields filled so far with `form_abandoned`. */
  captureFormDataOnAbandon?: boolean;
  customAttributes?: Attributes;
  /** Fields copied into traits (an email field, to identify the visitor). */
  traitsMapper?: TraitMapping[];
}

/**
 * The web session as the collector knows it. `ac('session', callback)` calls back with
 * it, or with `null` when the collector has no live session for the visitor (nothing
 * stored yet after about ten seconds, or tracking is off).
 */
export interface WebSession {
  id: string;
  /** The short id an agent can ask a visitor for ("482913"). */
  shortId: string;
}

/** What `ac.state()` gives (the tests' hook): empty before `init`. */
export interface SdkState {
  visitorId?: string;
  sessionId?: string;
  deploymentId?: string;
  /** Where batches go, once consent lets anything be sent. */
  url?: string;
  /** This page's events the collector has not judged yet. */
  queued?: number;
}

/** The command function: the snippet's stub until the SDK loads, then the SDK. */
export interface Ac {
  (command: 'init', deploymentId: string, options?: InitOptions): void;

  (command: 'pageview', options?: PageviewOptions): void;

  (command: 'record', eventName: string, callback: DeliveryCallback): void;
  (command: 'record', eventName: string, attributes?: Attributes, callback?: DeliveryCallback): void;

  (command: 'identify', loginId: string, callback: DeliveryCallback): void;
  (command: 'identify', loginId: string, traits?: Traits, callback?: DeliveryCallback): void;
  (command: 'identify', traits: Traits, callback?: DeliveryCallback): void;
  /** Log out: identity is cleared and the next activity starts a new journey. */
  (command: 'identify', loginId: null, callback?: DeliveryCallback): void;

  <E extends EventName>(command: 'on' | 'once' | 'off', event: E, handler: EventHandlers[E]): void;

  (command: 'consent', answer: 'granted' | 'denied'): void;
  (command: 'optOut'): void;
  (command: 'optIn'): void;

  (command: 'load', plugin: 'autotrackClick', options: PluginOptions['autotrackClick'], loadedCallback?: LoadedCallback): void;
  (command: 'load', plugin: 'autotrackIdle', options: PluginOptions['autotrackIdle'], loadedCallback?: LoadedCallback): void;
  (command: 'load', plugin: 'autotrackInViewport', options: PluginOptions['autotrackInViewport'], loadedCallback?: LoadedCallback): void;
  (command: 'load', plugin: 'autotrackScrollDepth', options: PluginOptions['autotrackScrollDepth'], loadedCallback?: LoadedCallback): void;
  (command: 'load', plugin: 'autotrackUrlChange', options?: PluginOptions['autotrackUrlChange'], loadedCallback?: LoadedCallback): void;

  (command: 'forms:track', selector: string, options: FormTrackOptions): void;

  (command: 'session', callback: (session: WebSession | null) => void): void;

  /** The calls queued by the stub before the SDK loaded (gone once it has). */
  readonly q?: ArrayLike<unknown>[];
  /** When the snippet ran (milliseconds since the epoch). */
  readonly l?: number;
  /** True once the SDK has replaced the stub. */
  readonly loaded?: boolean;
  /** The SDK's state, for tests; absent until the SDK has loaded. */
  readonly state?: () => SdkState;
}

export interface InstallOptions {
  /** The SDK's URL: `https://collector.example/sdk/footpath.js`. */
  src: string;
  /** The global the command function lives in; default `'ac'`. */
  name?: string;
}

/**
 * Does what the snippet does: defines the global command function (a stub that queues
 * calls until the SDK has loaded) and inserts one async script for the SDK. Calling it
 * again, or in a page that already has the snippet, inserts nothing more. Gives a
 * function that always calls the current global, stub or SDK.
 *
 * Throws where there is no `window` (server-side rendering): call it in the browser.
 */
export function install(options: InstallOptions): Ac;
