// The agents' desk. Plain JavaScript, no build step, nothing loaded from anywhere but
// the collector.
//
// Security rule of this file: everything in the JSON we fetch came, directly or not,
// from website visitors, and is untrusted. The DOM is built with createElement and
// textContent only: never innerHTML, never a visitor's text in an attribute that the
// browser interprets (href only for http(s) URLs that the server marked `linkable`: the
// deployment's own origins). The page's Content-Security-Policy
// forbids inline script as a second line of defence.
(function () {
  'use strict';

  var SVG_NS = 'http://www.w3.org/2000/svg';

  // Built-in icons: stroked paths on a 24×24 grid. Configured icons name one of these
  // (the server refuses others; collector/src/desk/config.rs lists the same names).
  var ICONS = {
    web: ['M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z', 'M3 12h18', 'M12 3c3.5 3.5 3.5 14.5 0 18', 'M12 3c-3.5 3.5-3.5 14.5 0 18'],
    start: ['M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z', 'M10 8l6 4-6 4z'],
    end: ['M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z', 'M9 9h6v6H9z'],
    page: ['M6 2h8l5 5v15H6z', 'M14 2v5h5', 'M9 12h7', 'M9 16h7'],
    search: ['M10 4a6 6 0 1 0 0 12a6 6 0 1 0 0-12z', 'M14.5 14.5L20 20'],
    custom: ['M13 2L4 14h7l-1 8 9-12h-7z'],
    form: ['M5 3h14v18H5z', 'M8 8h8', 'M8 12h8', 'M8 16h5'],
    identify: ['M12 4a4 4 0 1 0 0 8a4 4 0 1 0 0-8z', 'M4 21c0-4 4-6 8-6s8 2 8 6'],
    logout: ['M10 4H4v16h6', 'M14 8l4 4-4 4', 'M8 12h10'],
    segment: ['M11 4a8 8 0 1 0 9 9h-9z', 'M14 2v8h8a8 8 0 0 0-8-8z'],
    outcome: ['M5 21V4', 'M5 4h13l-3 4 3 4H5'],
    cart: ['M3 4h3l2.5 11h10l2-8H7', 'M10 20a1 1 0 1 0 0.01 0z', 'M17 20a1 1 0 1 0 0.01 0z'],
    order: ['M4 4h16v16H4z', 'M8 12l3 3 5-6'],
    star: ['M12 3l2.7 5.6 6.1.9-4.4 4.3 1 6.1L12 17l-5.4 2.9 1-6.1-4.4-4.3 6.1-.9z'],
    video: ['M3 6h12v12H3z', 'M15 10l6-3v10l-6-3'],
    alert: ['M12 3l10 18H2z', 'M12 10v5', 'M12 18v0.5'],
    check: ['M4 12l5 5L20 6']
  };
  var KIND_ICON = {
    session_start: 'start', pageview: 'page', search: 'search', custom: 'custom', form: 'form',
    identify: 'identify', logout: 'logout', segment: 'segment', outcome: 'outcome', session_end: 'end'
  };

  var state = {
    title: 'Web Visit',
    sessions: [],
    openId: null,
    openCard: null,
    // Server time minus this browser's time, so that durations tick by the server's clock.
    offset: 0
  };

  function $(id) { return document.getElementById(id); }

  // An element with a class and, optionally, text (always as text, never as markup).
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function append(parent, children) {
    children.forEach(function (child) { if (child) parent.appendChild(child); });
    return parent;
  }

  // An icon with an accessible name: a built-in SVG (an unknown name draws `custom`).
  function icon(name, label) {
    if (!Object.prototype.hasOwnProperty.call(ICONS, name)) name = 'custom';
    var paths = ICONS[name];
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'icon icon-' + name);
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    svg.setAttribute('focusable', 'false');
    var title = document.createElementNS(SVG_NS, 'title');
    title.textContent = label;
    svg.appendChild(title);
    paths.forEach(function (d) {
      var path = document.createElementNS(SVG_NS, 'path');
      path.setAttribute('d', d);
      svg.appendChild(path);
    });
    return svg;
  }

  function serverNow() { return Date.now() + state.offset; }

  function formatDuration(ms) {
    var total = Math.max(0, Math.floor(ms / 1000));
    var hours = Math.floor(total / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var seconds = total % 60;
    var two = function (n) { return (n < 10 ? '0' : '') + n; };
    return hours > 0 ? hours + ':' + two(minutes) + ':' + two(seconds) : minutes + ':' + two(seconds);
  }

  function formatTime(ms) {
    var date = new Date(ms);
    return date.toLocaleDateString() + ' ' + date.toLocaleTimeString();
  }

  function durationOf(summary) {
    var end = summary.live ? serverNow() : (summary.endedMs || summary.lastActiveMs);
    return end - summary.createdMs;
  }

  // A duration element that the ticker keeps current while the session is live.
  function durationElement(summary, id) {
    var node = el('span', 'duration', formatDuration(durationOf(summary)));
    if (id) node.id = id;
    node.setAttribute('data-created-ms', String(summary.createdMs));
    node.setAttribute('data-live', summary.live ? '1' : '0');
    node.setAttribute('aria-label', 'Duration ' + formatDuration(durationOf(summary)));
    return node;
  }

  function tick() {
    var now = serverNow();
    var nodes = document.querySelectorAll('.duration[data-live="1"]');
    for (var i = 0; i < nodes.length; i++) {
      var text = formatDuration(now - Number(nodes[i].getAttribute('data-created-ms')));
      nodes[i].textContent = text;
      nodes[i].setAttribute('aria-label', 'Duration ' + text);
    }
  }

  function liveBadge(live) {
    var badge = el('span', live ? 'badge badge-live' : 'badge badge-ended', live ? 'Live' : 'Ended');
    return badge;
  }

  // Runs `task` once at a time; calls made meanwhile run it once more afterwards, so
  // the latest change is always fetched without piling up requests.
  function coalesced(task) {
    var running = false;
    var again = false;
    return function run() {
      if (running) { again = true; return; }
      running = true;
      again = false;
      Promise.resolve().then(task).catch(function (error) {
        if (window.console) console.warn('desk: ' + error.message);
      }).then(function () {
        running = false;
        if (again) run();
      });
    };
  }

  function api(path) {
    return fetch(path, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign('/desk/signin');
          throw new Error('signed out');
        }
        if (!response.ok) {
          var error = new Error(path + ': ' + response.status);
          error.status = response.status;
          throw error;
        }
        return response.json();
      });
  }

  function listPath() {
    var query = new URLSearchParams();
    query.set('status', $('status-filter').value);
    var search = $('search').value.trim();
    if (search) query.set('q', search);
    return '/desk/api/sessions?' + query.toString();
  }

  var refreshList = coalesced(function () {
    return api(listPath()).then(function (data) {
      state.offset = data.nowMs - Date.now();
      state.title = data.title;
      state.sessions = data.sessions;
      renderList();
    });
  });

  var refreshCard = coalesced(function () {
    var id = state.openId;
    if (!id) return null;
    return api('/desk/api/sessions/' + encodeURIComponent(id)).then(function (card) {
      if (state.openId !== id) return;
      state.offset = card.nowMs - Date.now();
      state.openCard = card;
      renderCard(card);
    }, function (error) {
      // The session is gone (erased, or past retention): what the card showed must
      // not stay on the agent's screen.
      if (error.status !== 404 || state.openId !== id) throw error;
      state.openId = null;
      state.openCard = null;
      var container = $('card');
      while (container.firstChild) container.removeChild(container.firstChild);
      container.removeAttribute('data-session-id');
      container.appendChild(quiet('This session is no longer stored.'));
    });
  });

  function openSession(id) {
    state.openId = id;
    var buttons = document.querySelectorAll('.session-item');
    for (var i = 0; i < buttons.length; i++) {
      var current = buttons[i].getAttribute('data-session-id') === id;
      if (current) buttons[i].setAttribute('aria-current', 'true'); else buttons[i].removeAttribute('aria-current');
    }
    refreshCard();
  }

  function renderList() {
    var list = $('session-list');
    var focused = document.activeElement && document.activeElement.getAttribute
      ? document.activeElement.getAttribute('data-session-id') : null;
    while (list.firstChild) list.removeChild(list.firstChild);
    $('list-empty').hidden = state.sessions.length > 0;
    state.sessions.forEach(function (summary) {
      var button = el('button', 'session-item');
      button.type = 'button';
      button.setAttribute('data-session-id', summary.id);
      button.setAttribute('data-customer-id', summary.customerId);
      if (summary.id === state.openId) button.setAttribute('aria-current', 'true');
      var page = summary.currentPage ? (summary.currentPage.title || summary.currentPage.url) : '';
      append(button, [
        icon('web', 'Web session'),
        append(el('span', 'item-main'), [
          append(el('span', 'item-head'), [
            el('span', 'item-name', summary.customerName),
            liveBadge(summary.live)
          ]),
          el('span', 'item-page', page),
          append(el('span', 'item-meta'), [
            el('span', 'item-short', 'Short id ' + summary.shortId),
            durationElement(summary)
          ])
        ])
      ]);
      button.addEventListener('click', function () { openSession(summary.id); });
      var item = el('li');
      item.appendChild(button);
      list.appendChild(item);
      if (focused === summary.id) button.focus();
    });
  }

  function section(title, id) {
    var node = el('section', 'card-section');
    if (id) node.id = id;
    node.appendChild(el('h3', null, title));
    return node;
  }

  function quiet(text) { return el('p', 'quiet', text); }

  // A page's URL: a link only when the server vouches for it (`linkable`: an origin of
  // the deployment's own) and it is http(s); text otherwise.
  function urlElement(page) {
    var url = page.url;
    if (page.linkable === true && /^https?:\/\//i.test(url)) {
      var link = el('a', 'url', url);
      link.href = url;
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
      return link;
    }
    return el('span', 'url', url);
  }

  function definitionList(rows, className) {
    var list = el('dl', className);
    rows.forEach(function (row) {
      if (row[1] === undefined || row[1] === null || row[1] === '') return;
      var term = el('dt', null, row[0]);
      var value = el('dd', null, row[1]);
      if (row[2]) value.setAttribute('data-field', row[2]);
      append(list, [term, value]);
    });
    return list;
  }

  // A segment's color, when it is one (the server validates it too): set through the
  // CSSOM, which the Content-Security-Policy allows, never as a style attribute.
  function safeColor(color) {
    return typeof color === 'string' && /^#[0-9a-fA-F]{6}$/.test(color) ? color : null;
  }

  function journeyItem(item, index) {
    var li = el('li', 'journey-event journey-' + item.kind);
    li.setAttribute('data-event-name', item.name);
    li.setAttribute('data-kind', item.kind);
    var tipId = 'journey-tip-' + index;
    var button = el('button', 'journey-icon');
    button.type = 'button';
    button.setAttribute('aria-describedby', tipId);
    button.setAttribute('data-item-id', item.id);
    var itemIcon = icon(item.icon || KIND_ICON[item.kind] || 'custom', item.displayName);
    button.appendChild(itemIcon);
    // Segments in their own color; outcomes green when positive, red when negative.
    var color = item.kind === 'segment' ? safeColor(item.color) : null;
    if (color) {
      li.setAttribute('data-color', color.toLowerCase());
      button.style.borderColor = color;
      itemIcon.style.color = color;
    }
    if (item.kind === 'outcome') {
      li.classList.add(item.positive === false ? 'outcome-negative' : 'outcome-positive');
      li.setAttribute('data-positive', item.positive === false ? 'false' : 'true');
    }
    var tip = el('div', 'tooltip');
    tip.id = tipId;
    tip.setAttribute('role', 'tooltip');
    append(tip, [
      el('strong', 'tip-name', item.displayName),
      el('span', 'tip-time', formatTime(item.timeMs))
    ]);
    if (item.page) {
      if (item.page.title) tip.appendChild(el('span', 'tip-page-title', item.page.title));
      tip.appendChild(el('span', 'tip-url', item.page.url));
    }
    if (item.searchQuery) tip.appendChild(el('span', 'tip-search', 'Search: ' + item.searchQuery));
    if (item.attributes.length) {
      var attributes = el('dl', 'tip-attributes');
      item.attributes.forEach(function (attribute) {
        var term = el('dt', null, attribute.label);
        term.setAttribute('data-attribute', attribute.name);
        append(attributes, [term, el('dd', null, attribute.value)]);
      });
      tip.appendChild(attributes);
    }
    append(li, [button, tip, el('span', 'journey-label', item.displayName)]);
    return li;
  }

  function renderCard(card) {
    var container = $('card');
    var active = document.activeElement;
    var focusedItem = active && active.getAttribute ? active.getAttribute('data-item-id') : null;
    while (container.firstChild) container.removeChild(container.firstChild);
    var session = card.session;
    container.setAttribute('data-session-id', session.id);

    var header = append(el('header', 'card-header'), [
      icon('web', 'Web session'),
      append(el('div', 'card-heading'), [
        el('h2', 'card-title', card.title),
        append(el('p', 'card-who'), [
          el('span', 'card-customer', session.customerName),
          liveBadge(session.live)
        ])
      ]),
      append(el('p', 'card-duration-box'), [
        el('span', 'visually-hidden', 'Duration '),
        durationElement(session, 'card-duration')
      ])
    ]);
    header.querySelector('.card-customer').id = 'card-customer';
    container.appendChild(header);

    var current = section('Current page', 'card-current-page');
    if (session.currentPage) {
      var title = el('p', 'page-title', session.currentPage.title || '(no title)');
      title.id = 'card-page-title';
      var url = urlElement(session.currentPage);
      url.id = 'card-page-url';
      append(current, [title, url]);
    } else {
      current.appendChild(quiet('No page viewed yet.'));
    }
    container.appendChild(current);

    var info = card.info;
    var infoSection = section('Session information', 'card-info');
    infoSection.appendChild(definitionList([
      ['Browser', info.browser, 'browser'],
      ['Operating system', info.os, 'os'],
      ['Device', info.device, 'device'],
      ['Location', info.location, 'location'],
      ['Referrer', info.referrer, 'referrer'],
      ['Referrer medium', info.referrerMedium, 'referrer-medium'],
      ['Campaign', info.campaign, 'campaign'],
      ['Short id', info.shortId, 'short-id'],
      ['Authenticated', info.authenticated ? 'Yes' : 'No', 'authenticated'],
      ['Identified by', info.identifiedBy, 'identified-by'],
      ['Events', String(session.eventCount) + ' (' + session.pageviewCount + ' page views)', 'events']
    ], 'info-list'));
    container.appendChild(infoSection);

    var journey = section('Journey map', 'card-journey');
    var map = el('ol', 'journey-map');
    map.setAttribute('aria-label', 'Journey map, oldest first');
    card.journey.forEach(function (item, index) { map.appendChild(journeyItem(item, index)); });
    journey.appendChild(map);
    if (card.journeyOmitted) {
      journey.appendChild(quiet(card.journeyOmitted + ' more events are not shown: the card is at its size limit.'));
    }
    container.appendChild(journey);

    var searches = section('Searches performed', 'card-searches');
    if (card.searches.length) {
      var searchList = el('ul', 'plain-list');
      card.searches.forEach(function (term) { searchList.appendChild(el('li', null, term)); });
      searches.appendChild(searchList);
    } else {
      searches.appendChild(quiet('None yet.'));
    }
    container.appendChild(searches);

    var segments = section('Segments matched', 'card-segments');
    if (card.segments.length) {
      var segmentList = el('ul', 'chip-list');
      card.segments.forEach(function (segment) {
        var chip = el('li', 'chip chip-segment');
        chip.setAttribute('data-segment-id', segment.id);
        var swatch = el('span', 'swatch');
        swatch.setAttribute('aria-hidden', 'true');
        var color = safeColor(segment.color);
        if (color) {
          chip.setAttribute('data-color', color.toLowerCase());
          swatch.style.backgroundColor = color;
          chip.style.borderColor = color;
        }
        append(chip, [swatch, el('span', 'chip-name', segment.displayName)]);
        segmentList.appendChild(chip);
      });
      segments.appendChild(segmentList);
    } else {
      segments.appendChild(quiet('None yet.'));
    }
    container.appendChild(segments);
    var outcomes = section('Outcomes achieved', 'card-outcomes');
    if (card.outcomes.length) {
      var outcomeList = el('ul', 'chip-list');
      card.outcomes.forEach(function (outcome) {
        var chip = el('li', 'chip chip-outcome ' + (outcome.positive ? 'outcome-positive' : 'outcome-negative'));
        chip.setAttribute('data-outcome-id', outcome.id);
        chip.setAttribute('data-positive', outcome.positive ? 'true' : 'false');
        append(chip, [
          icon(outcome.positive ? 'check' : 'alert', outcome.positive ? 'Positive outcome' : 'Negative outcome'),
          el('span', 'chip-name', outcome.displayName),
          outcome.value ? el('span', 'chip-value', outcome.value) : null
        ]);
        outcomeList.appendChild(chip);
      });
      outcomes.appendChild(outcomeList);
    } else {
      outcomes.appendChild(quiet('None yet.'));
    }
    container.appendChild(outcomes);

    if (focusedItem) {
      var again = container.querySelector('[data-item-id="' + CSS.escape(focusedItem) + '"]');
      if (again) again.focus();
    }
  }

  function setConnection(text, ok) {
    var status = $('connection');
    status.textContent = text;
    status.className = ok ? 'connection connection-ok' : 'connection';
  }

  // Live updates. EventSource reconnects by itself after a network error (the
  // collector restarting); each (re)connection starts with `ready`, and the desk then
  // reloads what it shows. A refused stream (signed out) closes it for good: we check
  // the sign-in, which redirects to the sign-in page when it is gone.
  function connect() {
    var source = new EventSource('/desk/api/stream');
    source.addEventListener('ready', function () {
      setConnection('Live', true);
      refreshList();
      refreshCard();
    });
    source.addEventListener('visitor', function (event) {
      var change = JSON.parse(event.data);
      refreshList();
      if (state.openCard && state.openCard.session.customerId === change.customerId) refreshCard();
    });
    // The presentation (card title, how events look) was changed through the admin API.
    source.addEventListener('presentation', function () {
      refreshList();
      refreshCard();
    });
    source.addEventListener('resync', function () {
      refreshList();
      refreshCard();
    });
    source.onerror = function () {
      setConnection('Reconnecting…', false);
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(function () {
          api('/desk/api/sessions?status=active').then(connect, function () { setTimeout(connect, 3000); });
        }, 2000);
      }
    };
  }

  function moveFocus(event) {
    if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
    var buttons = Array.prototype.slice.call(document.querySelectorAll('.session-item'));
    var index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    var next = buttons[index + (event.key === 'ArrowDown' ? 1 : -1)];
    if (next) { next.focus(); event.preventDefault(); }
  }

  function start() {
    var searchTimer = null;
    $('search').addEventListener('input', function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(refreshList, 200);
    });
    $('status-filter').addEventListener('change', refreshList);
    $('session-list').addEventListener('keydown', moveFocus);
    document.addEventListener('keydown', function (event) {
      // Escape hides a tooltip by moving focus back to the list.
      if (event.key === 'Escape' && document.activeElement && document.activeElement.classList.contains('journey-icon')) {
        document.activeElement.blur();
      }
    });
    setInterval(tick, 1000);
    // Sessions also end without an event (after 20 idle minutes): a slow full refresh
    // catches those.
    setInterval(function () { refreshList(); refreshCard(); }, 30000);
    refreshList();
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
