"""The phrase lists behind `evals.specificity`: what only a reader's own writer would say, and
what a mail merge says to everyone. The playbook's banned, urgency and pitch phrases are added to
the generic side at scoring time and are not repeated here. Each entry is (pattern, why, weight);
`why` is what `gtm lint` prints next to the span."""

from __future__ import annotations

import re

__all__ = ["GENERIC_PHRASES", "SPECIFIC_PHRASES", "rx"]


def rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


_WORK = (
    r"post|article|talk|keynote|podcast|episode|interview|tweet|thread|comment|paper|"
    r"blog(?: post)?|newsletter|webinar|presentation|panel|video|essay|piece|book|"
    r"launch|announcement|release|repo|pull request|PR|answer|write-?up|case study|"
    r"session|workshop|demo|course|report|study|survey|update|AMA"
)
_DID = (
    r"wrote|said|mentioned|shared|posted|tweeted|launched|shipped|announced|raised|published|"
    r"presented|spoke|asked|argued|described|open[- ]sourced|released|hired|moved|joined|"
    r"opened|closed|acquired|migrated|rolled out|switched|built|started|founded|won"
)
# (pattern, why, weight): things only someone who looked at this reader would write.
SPECIFIC_PHRASES: tuple[tuple[re.Pattern[str], str, float], ...] = (
    (
        rx(rf"your (?:recent |latest |last |new )?(?:{_WORK})(?: (?:on|about|at|in|for|titled))?"),
        "refers to something they made or said",
        2.0,
    ),
    (
        rx(
            r"(?:saw|noticed|read|heard|watched|listened to|caught|see) (?:that )?"
            rf"(?:you(?:'re| are|'ve| have| were)?|your team(?: is| has)?) (?:just |recently )?"
            rf"(?:hiring|{_DID}|expanding|building|migrating|moving|speaking|launching)"
        ),
        "refers to something they did",
        2.0,
    ),
    (
        rx(rf"(?:you|your team) (?:recently |just |also )?(?:{_DID})"),
        "refers to something they did or said",
        1.5,
    ),
    (rx(r"(?:you(?:'re| are)|you guys are|your team is) hiring"), "they are hiring", 1.5),
    (
        rx(
            r"(?:saw|noticed|read|see) (?:that )?\S+(?: \S+)?? (?:just |recently )?"
            r"(?:posted|opened|is hiring|are hiring|has|raised|launched|announced|shipped)"
        ),
        "refers to a trigger event at their company",
        1.5,
    ),
    (
        rx(r"(?:suggested|recommended) (?:I|we) (?:reach out|contact|write|talk)"),
        "a named referral",
        1.5,
    ),
    (rx(r"congrats|congratulations"), "congratulates them on something", 0.5),
    (rx(r"when you (?:said|wrote|mentioned|asked|described)"), "quotes them", 1.5),
)

_VAGUE_WHO = (
    r"(?:companies|businesses|teams|organi[sz]ations|brands|firms|leaders|startups|clients)"
)
_OUTCOME = (
    r"revenue|sales|growth|roi|conversions?|efficiency|productivity|pipeline|engagement|leads|"
    r"results|profits?|bottom line|performance|retention|output|visibility"
)
# (pattern, why, weight): what could be sent to anyone. The playbook's lists come on top.
GENERIC_PHRASES: tuple[tuple[re.Pattern[str], str, float], ...] = (
    (
        rx(
            r"I hope (?:this|you|all|your|everything)[^.!?\n]{0,40}",
            r"hope you(?:'re| are) (?:well|doing well|having a (?:great|good) \w+)",
            r"my name is (?-i:[A-Z][\w'’-]*)(?: (?-i:[A-Z][\w'’-]*))?",
            r"I(?:'m| am) (?:reaching out|writing to you|writing to|contacting you)",
            r"I wanted to (?:introduce|connect|reach|touch base|share|see|follow up|ask)",
            r"allow me to introduce(?: myself)?",
            r"quick question",
            r"I(?:'ll| will) keep (?:this|it) (?:short|brief)",
            r"(?:just )?(?:checking|following) (?:in|up)",
            r"bumping (?:this|my)",
            r"I know you(?:'re| are) (?:busy|swamped)",
            r"I(?:'d| would) love to connect",
            r"let'?s connect",
            r"hope (?:all is well|all's well|you(?:'re| are) (?:well|doing well))",
            r"one last (?:try|time|attempt|note)",
            r"(?:haven't|have not) heard (?:back|from you)",
            r"(?:you(?:'ve| have) been|you(?:'re| are)) (?:busy|swamped)",
            r"follow(?:ing)? up on (?:my|our) (?:last|previous)",
        ),
        "boilerplate opener",
        1.0,
    ),
    (
        rx(
            r"impressive (?:work|profile|background|growth|company|team|journey|achievements?)",
            r"(?:great|amazing|incredible|awesome|fantastic|impressive|inspiring) "
            r"(?:work|things|job|stuff|profile|background|company|team)",
            r"love what you(?:'re| are) (?:doing|building)",
            r"I(?:'ve| have) been following (?:your|you)(?: (?:company|work|journey|career))?",
            r"(?:caught|grabbed) my (?:eye|attention)",
            r"(?:really )?impressed (?:by|with) (?:your|what you)"
            r"(?: (?:company|team|work|profile|background|growth|success))?",
            r"(?:thought|industry) leader(?:ship)?",
            r"leader in (?:the|your) (?:space|industry|field)",
            r"came across your (?:company|profile|website|business|page)",
        ),
        "generic praise",
        1.0,
    ),
    (
        rx(
            rf"help(?:s|ed|ing)? (?:{_VAGUE_WHO}|you)(?: like (?:yours|you))?",
            rf"{_VAGUE_WHO} (?:like yours|like you|similar to yours|in your (?:space|industry))",
            rf"(?:increase|boost|grow|drive|improve|maximi[sz]e|double|triple|10x|skyrocket) "
            rf"(?:your |their )?(?:{_OUTCOME})",
            r"save (?:you )?(?:time|money|hours)",
            r"(?:to )?the next level",
            r"streamline\w*|seamless(?:ly)?|scalable|innovative|all-in-one|one-stop|end-to-end",
            r"state[- ]of[- ]the[- ]art|industry[- ]leading|best practices|pain points?",
            r"value proposition|at scale|solutions?",
            r"transform(?:s|ing)? (?:your|the way)",
            r"(?:top|leading) (?:companies|brands|teams)",
            r"(?:hundreds|thousands|dozens) of (?:companies|businesses|customers|clients|teams)",
            r"fortune \d+",
        ),
        "vague value claim",
        1.0,
    ),
    (
        rx(
            r"(?:is|are|were) (?:probably|likely)",
            r"chances are",
            r"I(?:'d)? bet",
            r"if you(?:'re| are) like most",
            r"imagine (?:if|instead|a|how)",
            r"I(?:'m| am) guessing",
        ),
        "a guess about them, not knowledge",
        1.0,
    ),
    (
        rx(
            r"(?:most|many|the average|typical|the majority of|\d+% of) (?:b2b |saas )?"
            r"(?:sales |marketing |finance |engineering |hr )?"
            r"(?:teams|companies|businesses|organi[sz]ations|founders|leaders|reps|people|firms)"
            r"[^.!?\n]*"
        ),
        "a claim about everyone, not about them",
        1.0,
    ),
    (
        rx(
            r"(?:https?://)?(?:www\.)?(?:calendly\.com|cal\.com|savvycal\.com|chilipiper\.com|"
            r"youcanbook\.me|meetings\.hubspot\.com|hubspot\.com/meetings)[^\s)>\]]*",
            r"(?:my|the link to my|link to my) calendar",
            r"(?:book|schedule|grab|find|set up) (?:a |some )?(?:time|call|meeting|slot|demo)",
            r"(?:\d+|ten|fifteen|twenty|thirty)[- ]min(?:ute)?s?(?: call| chat| meeting)?",
            r"(?:hop|jump) on a (?:quick )?(?:call|zoom|chat)",
            r"(?:are you|would you be|you be) (?:free|available|open) (?:for|to)",
            r"(?:worth|open to) a (?:quick )?(?:chat|call|conversation)",
            r"let me know (?:if|when) you(?:'re| are| would be)? (?:interested|free|available)",
            r"what does your (?:calendar|schedule|week) look like",
            r"interested in learning more",
        ),
        "calendar-link ask",
        1.0,
    ),
)
