// Every overload of `ac(...)`, as a site built with a bundler writes them, and wrong
// uses that the declarations must refuse: each `@ts-expect-error` line fails the
// compilation if it ever compiles cleanly. Checked by `cargo xtask test` with
// `tsc --noEmit -p js/examples`; never run.

import { install, type Ac, type SdkState, type WebSession } from 'footpath-sdk';

const ac: Ac = install({ src: 'https://collector.example/sdk/footpath.js' });
install({ src: 'https://collector.example/sdk/footpath.js', name: 'tracker' });

ac('init', 'shop');
ac('init', 'shop', {
  collectorUrl: 'https://collector.example',
  cookieDomain: 'example.com',
  cookieExpiryDays: 30,
  sessionTimeoutMinutes: 30,
  searchQueryParameters: ['q', 'query'],
  excludedQueryParameters: ['token'],
  keepUrlFragment: true,
  pageview: 'once',
  consent: 'pending',
  honorGlobalPrivacyControl: true,
  honorDoNotTrack: false,
  globalTraitsMapper: [{ fieldName: 'email', traitName: 'email' }],
  region: 'euw2',
});

ac('pageview');
ac('pageview', {
  location: 'https://shop.example/step-2',
  title: 'Step 2',
  customAttributes: { step: 2 },
  traitsMapper: [{ fieldName: 'email', traitName: 'email' }],
});

ac('record', 'order_completed');
ac('record', 'order_completed', { orderId: 'A-17', value: 129.5, gift: false, when: { dataType: 'string', value: 'today' } });
ac('record', 'order_completed', { orderId: 'A-17' }, (error, result) => {
  if (error) console.log(error.message);
  else console.log(result?.id);
});
ac('record', 'order_completed', (error) => console.log(error));

ac('identify', 'ada@example.com');
ac('identify', 'ada@example.com', { email: 'ada@example.com', displayName: 'Ada', age: 36, vip: true });
ac('identify', 'ada@example.com', { email: 'ada@example.com' }, (error) => console.log(error));
ac('identify', 'ada@example.com', (error, result) => console.log(error, result));
ac('identify', { email: 'ada@example.com' });
ac('identify', { email: 'ada@example.com' }, (error) => console.log(error));
ac('identify', null);
ac('identify', null, (error) => console.log(error));

ac('on', 'ready', () => console.log('ready'));
ac('once', 'session:started', (event) => console.log(event.sessionId.toUpperCase()));
ac('on', 'session:ended', (event) => console.log(event.sessionId));
const onError = (event: { command: string; message: string }) => console.log(event.command, event.message);
ac('on', 'error', onError);
ac('off', 'error', onError);

ac('consent', 'granted');
ac('consent', 'denied');
ac('optOut');
ac('optIn');

ac('load', 'autotrackClick', {
  clickEvents: [{ selector: 'button.buy', eventName: 'buy_clicked', customAttributes: { place: 'card' } }],
});
ac('load', 'autotrackIdle', { idleEvents: [{ idleAfter: 60, eventName: 'visitor_idled' }] }, () => {
  console.log('idle tracking runs');
});
ac('load', 'autotrackInViewport', { inViewportEvents: [{ selector: '#offer', eventName: 'offer_seen' }] });
ac('load', 'autotrackScrollDepth', {
  scrollDepthEvents: [
    { percentage: 50, eventName: 'half_read' },
    { percentage: 100, eventName: 'all_read', customAttributes: { article: 'pricing' } },
  ],
});
ac('load', 'autotrackUrlChange');
ac('load', 'autotrackUrlChange', { onUrlChange: (url) => ac('pageview', { location: url }) });
ac('load', 'autotrackUrlChange', {}, () => console.log('loaded'));

ac('forms:track', '#contact', { formName: 'contact' });
ac('forms:track', 'form.signup', {
  formName: 'signup',
  captureFormDataOnSubmit: true,
  captureFormDataOnAbandon: false,
  customAttributes: { campaign: 'winter' },
  traitsMapper: [{ fieldName: 'email', traitName: 'email' }],
});

ac('session', (session: WebSession | null) => console.log(`your reference is ${session?.shortId}`, session?.id));

const queued: number = ac.q?.length ?? 0;
const loadedAt: number | undefined = ac.l;
const loaded: boolean = ac.loaded === true;
const state: SdkState | undefined = ac.state?.();
console.log(queued, loadedAt, loaded, state?.visitorId, state?.sessionId, state?.queued);

// Wrong uses.

// @ts-expect-error: not a command.
ac('track', 'order_completed');
// @ts-expect-error: a command needs its name.
ac();
// @ts-expect-error: init needs a deployment id.
ac('init');
// @ts-expect-error: not an init option.
ac('init', 'shop', { cookieExpiry: 30 });
// @ts-expect-error: pageview is 'auto', 'once' or 'off'.
ac('init', 'shop', { pageview: 'always' });
// @ts-expect-error: a callback must be a function.
ac('record', 'order_completed', { orderId: 'A-17' }, 'done');
// @ts-expect-error: attribute values are flat.
ac('record', 'order_completed', { items: ['a', 'b'] });
// @ts-expect-error: a callback must be a function.
ac('identify', 'ada@example.com', {}, 42);
// @ts-expect-error: log-out takes no traits.
ac('identify', null, { email: 'ada@example.com' });
// @ts-expect-error: not an SDK event.
ac('on', 'clicked', () => {});
// @ts-expect-error: a handler must be a function.
ac('on', 'ready', 'handler');
// @ts-expect-error: session events carry `{ sessionId }`, not a number.
ac('on', 'session:started', (event: { sessionId: number }) => console.log(event));
// @ts-expect-error: consent is granted or denied ('pending' is for init).
ac('consent', 'pending');
// @ts-expect-error: not a plugin.
ac('load', 'autotrackEverything');
// @ts-expect-error: the click plugin needs its events.
ac('load', 'autotrackClick');
// @ts-expect-error: the click plugin's events are `clickEvents`.
ac('load', 'autotrackClick', { idleEvents: [{ idleAfter: 60, eventName: 'visitor_idled' }] });
// @ts-expect-error: an idle event needs `idleAfter` (seconds).
ac('load', 'autotrackIdle', { idleEvents: [{ eventName: 'visitor_idled' }] });
// @ts-expect-error: a scroll depth is a number.
ac('load', 'autotrackScrollDepth', { scrollDepthEvents: [{ percentage: '50%', eventName: 'half_read' }] });
// @ts-expect-error: the loaded callback must be a function.
ac('load', 'autotrackUrlChange', {}, true);
// @ts-expect-error: a tracked form needs its name.
ac('forms:track', '#contact', { captureFormDataOnSubmit: true });
// @ts-expect-error: the session callback must be a function.
ac('session', 'callback');
// @ts-expect-error: install needs the SDK's URL.
install({ name: 'ac' });
