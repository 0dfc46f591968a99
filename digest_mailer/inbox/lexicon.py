"""Ways readers ask to subscribe and to unsubscribe, language by language.

Each entry is a regular-expression fragment matched against NFKC-normalised, lower-cased
text (full-width letters and colons are folded, curly apostrophes straightened). Every
fragment is bounded: gaps are ``{0,N}`` over characters that cannot end a sentence, so
matching is linear in the text and a noun and its verb must stand in one clause.

Languages without spaces (Japanese, Chinese, Korean) are matched on meaning: a noun for
the subscription (購読, 配信, 登録, 구독, 订阅 …) followed within a few characters by a
verb or ending (解除, 停止, やめ, 取消, 그만 …), so particles and polite endings may
stand between them (購読を解除したい, 配信を停止してください, 구독을 취소해 주세요).

``third_person`` finds requests about somebody else (a colleague, a named person, a
former staff member); ``self_words`` shows the sender asks for themselves, so a passing
mention of "our team" does not turn a request for oneself into one for someone else.

Reviewed by reading each list against the tests in ``tests/inbox/test_lexicon.py``,
which hold sentences in each language.
"""

from dataclasses import dataclass

# a gap inside one clause: no sentence end, no line break
_GAP = r"[^.!?。！？\n]"
_CJK_GAP = r"[^.!?。！？\n]{0,8}?"
# a gap that also stops at a comma: German and French subordinate clauses start after one
# ("Ich möchte wissen, warum ich keine Mails mehr bekomme" is no request)
_CLAUSE = r"[^.!?。！？\n,;]"


def _near(nouns: str, verbs: str, gap: str = _CJK_GAP) -> str:
    return f"(?:{nouns}){gap}(?:{verbs})"


@dataclass(frozen=True)
class Language:
    code: str
    unsubscribe: tuple[str, ...]
    subscribe: tuple[str, ...]
    third_person: tuple[str, ...] = ()
    self_words: tuple[str, ...] = ()


def _en_not(word: str) -> str:
    """``word`` unless a negation stands before it ("please don't unsubscribe me", "do not
    remove me" ask the opposite). The look-behinds come after the word, so the pattern
    still starts with a literal and costs nothing where the word is not."""
    return word + "".join(f"(?<!{n} {word})" for n in ("n't", "not", "dont", "never"))


ENGLISH = Language(
    "en",
    unsubscribe=(
        r"\b"
        + _en_not("un")
        + r"-?\s?s[ua]?b?s?c?r?i?be?\w*",  # unsubscribe, unsubcribe, unsuscribe, unsubscibe
        r"\bunsub\b",
        r"\bun-?subscription\b",
        r"\b"
        + _en_not("remove")
        + r" (?:me|us|myself|my (?:e-?mail|address|name|e-?mail address))\b",
        r"\b(?:delete|erase|expunge|purge|strike|drop) my (?:e-?mail |mail )?(?:address|e-?mail|name"
        r"|details)\b",
        r"\b(?:please|pls|plz|kindly) remove\b",
        r"\bremove (?:from|off) (?:the |your |this )?(?:list|mailing|distribution)",
        r"\b" + _en_not("take") + r" (?:me|us|my (?:e-?mail|address|name)) off\b",
        r"\b(?:stop|quit|cease) (?:sending|e-?mailing|mailing|receiving|getting)\b",
        r"\bno longer (?:wish|want|like|need|care) to (?:receive|get|be on|read)\b",
        r"\b(?:no longer (?:have )?(?:any |a )?|(?:have|has) no (?:further |more )?|no further )need"
        r" (?:for|of)\b",
        r"\b(?:don'?t|do not|dont) (?:want|wish|need) (?:to (?:receive|get|be on)|this|these|it)\b",
        r"\bopt[- ]?(?:me )?out\b",
        r"\b" + _en_not("cancel") + r" (?:my|the|this|our) subscription\b",
        r"\bend (?:my|the|our) subscription\b",
        r"\b(?:delete|drop) me\b",
        r"\b(?:never|didn'?t|did not) (?:sign(?:ed)? up|subscribe[d]?|ask(?:ed)? for (?:this|it))\b",
        r"^\s*stop\s*[.!]*\s*$",
        r"\bleave (?:the|your|this) (?:list|mailing list)\b",
        r"\b(?:rather not|prefer not to) (?:get|receive|be sent|be on)\b",
        r"\bnot (?:to )?(?:get|receive|be sent) (?:these|this|them|it|your \w+) any ?more\b",
        r"\bno more (?:e-?mails?|mails?|newsletters?|digests?|of (?:these|this))\b",
        # "I'd like to be removed", "can I be taken off"; not "will I be removed?"
        r"\b(?:like|love|want|wish|need|ask(?:ing)?|prefer|please) (?:to )?(?:be|get) (?:removed"
        r"|taken off|deleted|dropped)\b",
        r"\b(?:can|could|may) (?:i|we) (?:please )?(?:be|get) (?:removed|taken off|deleted|dropped)\b",
        r"\bd(?<!you d)(?<!they d)(?<!we d)(?:on'?t|o not|ont) send (?:me|us|it|them|this|these"
        r"|the (?:digest|newsletter))\b",
        r"\bno longer interested\b|\bnot interested any ?(?:more|longer)\b",
        r"^\s*remove\s*[.!]*\s*$",
        # a bare "stop" with a word of politeness, in any of the languages
        r"^\s*stop\b[ ,.!]{0,3}(?:please|pls|thanks|thank you|merci|svp|s'il vous pla[îi]t"
        r"|danke|bitte|gracias|por favor)?[ .!]{0,3}$",
    ),
    subscribe=(
        r"\bsubscribe\b",
        r"\bsu(?:bs?c?|s?c)r?i?be\b",  # subcribe, suscribe, subscibe, subsribe
        r"\bsubscription request\b",
        r"\bsign (?:me |us )?up\b",
        r"\badd (?:me|us|myself)\b",
        r"\bplease add\b",
        r"\badd my (?:[\w-]{1,20} ){0,2}(?:e-?mail|address)\b",
        r"\b(?:like|love|want|wish|hoping|hope) to (?:receive|get|subscribe|join|be added|be on"
        r"|be included|start receiving|sign up)\b",
        r"\b(?:put(?<!who put)(?<!did you put)|place|get) (?:me|us) on(?:to)?\b",  # not "who put me on"
        r"\benroll?(?:ing)? (?:me|us)\b",
        r"\binclude (?:me|us)\b",
        r"\bcount me in\b",
        r"\bjoin (?:the|your) (?:mailing )?list\b",
        r"\bsend (?:me|us) (?:the|your) (?:digest|newsletter)\b",
        # a request, not "why did you send it to me?"
        r"\b(?:please|pls|kindly|could you|can you|would you|just) send (?:it|them|the (?:digest"
        r"|newsletter)|future issues) to (?:me|my)\b",
        r"\bkeep me (?:on|posted|updated)\b",
        r"\b(?:keep|continue) (?:receiving|getting)\b|\bstay (?:subscribed|on the list)\b",
        r"\breceive (?:the|your) (?:digest|newsletter) by e-?mail\b",
    ),
    third_person=(
        r"\b(?:my|our) (?:[\w-]{1,20} )?(?:colleagues?|co-?workers?|friends?|boss|assistant"
        r"|manager|partner|wife|husband|intern|director|secretary|successor|predecessor"
        r"|staff member|employee|team ?mate)\b",
        r"\b(?:former|ex-|previous) (?:staff|employee|colleague|member|team member|intern)",
        r"\b(?:he|she|they) (?:has|have|had)? ?(?:left|retired|moved on|passed away)\b",
        r"\b(?:he|she|they)(?: is| are|'s|'re)? no longer (?:works?|with us|employed|at|here)\b",
        r"\bon behalf of\b",
        r"\b(?:everyone|everybody|all of us|all (?:our |the )?(?:staff|employees|addresses|members"
        r"|users|readers)|(?:the )?whole (?:team|office|company|department|domain|organi[sz]ation))\b",
        r"\b(?:his|her|their) (?:e-?mail|address|subscription|mailbox|account)\b",
        # "she", "him", "her" and "his" name nobody who writes for themselves; "he" only
        # with a verb, as Spanish "he" (I have) is common ("nunca me he suscrito")
        r"\b(?:she|her|hers|him|his)\b",
        r"\bhe(?:'s| is| was| has| had| would|'d| wants| wishes| asked| asks| no longer"
        r"| does not| doesn't| left| retired| moved| passed)\b",
    ),
    self_words=(
        r"\b(?:me|myself|i'?d|i would|i want|i wish|i'm|i am|my (?:e-?mail|address|own))\b",
    ),
)

JAPANESE = Language(
    "ja",
    unsubscribe=(
        _near(
            "購読|配信|登録|メール|ﾒｰﾙ|ニュースレター|メルマガ|ダイジェスト|案内|送信",
            "解除|停止|中止|取りやめ|取り止め|やめ|止め|とめ|不要|いりません|要りません"
            "|キャンセル|取り消|取消|削除|外し|はずし|抹消|ストップ|解約|拒否"
            "|希望しません|希望いたしません|必要ありません|必要ない"
            # 終了 only as a wish (受信を終了させていただきたく), not 配信はいつ終了しますか
            "|終了(?:させ|したい|して(?:ください|下さい|いただ|頂|ほしい|欲しい)|を(?:お願い|希望)"
            "|希望|でお願い)",
        )
        + r"(?!しないで|しなくて|せず|ないで|なくて|しません)",
        r"(?:受け取り|受取り|受信し)たく(?:ない|ありません|なく)",
        r"(?:配信|送信|送付)(?:は|を)?しな(?:いで|くて)|送ってこないで|送ってくれなくて",
        # 配信いただかなくて結構です, お送りいただかなくて大丈夫です
        r"(?:配信|送信|送付|お送り|送っ|送ら)[^。！？\n]{0,6}?なくて(?:結構|けっこう|大丈夫|構いません"
        r"|いい|よい)",
        r"退会",
        r"送らないで",
        r"送付(?:を|は)?(?:不要|停止|中止|結構)",
        r"もう(?:結構|必要ありません|不要)",
        r"リストから(?:外|はず|削除)",
    ),
    subscribe=(
        _near(
            "購読|配信|登録|メール|ニュースレター|メルマガ|ダイジェスト",
            "希望|お願い|願い|したい|して(?:ください|下さい|いただ|頂)|申し込|申込|開始",
        ),
        # only right after the noun: 受信を終了させていただきたく is a wish to stop
        r"(?:購読|登録)させて(?:ください|下さい|いただ|頂)",
        r"送って(?:ください|下さい|いただ|頂|ほしい|欲しい)",
        r"受け取りたい|受信したい|読みたい",
        r"(?:リスト|名簿)に(?:追加|加え|入れ)",
    ),
    third_person=(
        r"同僚|友人|部下|上司|後任|前任|退職|家族|秘書|代わりに|代理|部長|課長|社長|社員|彼",
        r"(?:他|ほか)の(?:方|人|者|メンバー)",
        # a named person: 田中さんの配信, 鈴木様を (not ご担当者様 or 皆様, which greet us)
        r"さん(?<!皆さん)(?<!みなさん)(?:の|を|も|が|は|に)|様(?<!皆様)(?<!者様)(?:の|を|も|が|は|に)"
        r"|氏(?:の|を|も|が|は|に)",
    ),
    self_words=(r"私|わたし|僕|自分|小生|弊職",),
)

KOREAN = Language(
    "ko",
    unsubscribe=(
        _near(
            "구독|수신|뉴스레터|메일|이메일|발송|전송",
            # 그만 takes its verb along, so 그만 받고 싶어요 is not read as 받고 싶 (subscribe)
            "취소|해지|중단|중지|거부|그만 ?(?:보내|받아 ?보고|받고|받)|그만|해제|원하지 않|원치 않"
            "|끊|빼|희망하지 않|신청하지 않|신청한 적(?:이|은)? 없",
        )
        + r"(?! ?하지 ?(?:마|말|않))",  # 구독 취소하지 마세요 asks to keep it
        r"(?:이제|앞으로|더는|더 이상)[^.!?\n]{0,12}?(?:필요 ?없|필요하지 않)",
        r"그만 (?:보내|받)",
        r"더 ?(?:이상|는)[^.!?\n]{0,12}?(?:받고 싶지 않|받지 않|받아 ?보지 않|보내지 마|필요 없|필요하지 않"
        r"|원하지 않|원치 않)",
        r"(?:목록|리스트|명단)에서[^.!?\n]{0,10}?(?:빼|제외|삭제|지워)",
        r"안 ?보내(?:셔도|주셔도|줘도|도) ?(?:돼|됩|괜찮)",
        r"보내지 ?(?:마|말아)",
        r"(?:받고|받아 ?보고) 싶지 않",
        r"탈퇴",
    ),
    subscribe=(
        _near("구독|수신|뉴스레터|메일|이메일|명단|목록", "신청|원합니다|원해요|희망|하고 싶|추가"),
        r"구독(?:을|를)? ?(?:하겠|할게|할래|부탁)",
        r"(?:명단|목록|리스트)에[^.!?\n]{0,10}?(?:추가|넣어|포함|등록)",
        r"보내(?:주세요|주십시오|줘|주시기 바랍니다|주시면)",
        r"(?:받고|받아 ?보고) 싶(?!지 않)",
        r"(?:저도|이 주소로|이 메일로)[^.!?\n]{0,12}?받아 ?(?:볼 수 있|보고 싶(?!지 않))",
    ),
    third_person=(
        r"동료|친구|상사|부하|직원|퇴사|대신|비서|후임|팀장|부장님|과장님|차장님|사장님|선배|후배"
        r"|남편|아내|그분|그 분(?:의|을|은|이|께|도)",
        r"님(?:의|을|도)|씨(?<!날씨)(?:의|를)",  # a named person: 김민수 님을, 박 씨의
    ),
    self_words=(r"저는|제가|저의|제 |저 |나는|내가",),
)

CHINESE = Language(
    "zh",
    unsubscribe=(
        _near(
            "订阅|訂閱|邮件|郵件|电邮|電郵|简报|簡報|通讯|通訊|推送|发送|發送",
            "取消|退订|退訂|停止|退出|不要|不再|删除|刪除|移除",
        ),
        r"退订|退訂",
        _near(
            "取消(?<![不别別要]取消)|退出|停止|不要(?<![要想需]不要)(?!取消|退订|退訂)|不再|退掉",
            "订阅|訂閱|邮件|郵件|电子报|電子報|简报|簡報|通讯|通訊|推送",
            r"[^.!?。！？\n]{0,4}?",
        ),
        # not 要不要 / 想不想 / 需不需要 (questions)
        r"不(?<![要想需愿願]不)(?:要|想|再|需要|希望|愿意|願意)(?:再|继续|繼續)?(?:能|可以)?"
        r"(?:收|接收|收到|订阅|訂閱)",
        r"(?:取消|退订|退訂)(?<![不别別要]..)[^.!?。！？\n，,]{0,8}?(?:订阅|訂閱)",
        r"(?:已经|已經|再也)不需要|不再需要",
        r"(?:移出|移除出|踢出)(?:订阅|訂閱|邮件|郵件|邮寄|郵寄)?(?:名单|名單|列表)",
        r"(?:名单|名單|列表|清单|清單)(?:中|裡|里|上)?(?:移除|删除|刪除|删掉|刪掉|去掉|除名)",
        r"别再发|別再發|不要再发|不要再發",
        r"(?:不要|别|別|不用)再(?:给我|給我)?(?:发|發|寄)",
        r"停止(?:寄送|发送|發送|寄发|寄發|推送)",
        r"(?:从|從)(?:名单|名單|列表)(?:中)?(?:删除|刪除|移除)",
    ),
    subscribe=(
        _near(
            "订阅|訂閱|邮件列表|郵件列表|名单|名單|列表",
            "申请|申請|希望|想|要|加入|添加|开始|開始",
            r"[^.!?。！？\n]{0,4}?",
        ),
        r"(?:我)?(?:想|希望|要(?<!需要))(?:订阅|訂閱)",  # not 需要订阅 (must one subscribe?)
        r"(?:请|請)(?:把我|将我|將我)?(?:加入|添加|加到)",
        r"(?:请|請)(?:发送|發送|寄)(?:给我|給我)",
        r"(?:想|希望|想要)(?:能|可以|能够|能夠)?(?:收到|接收|订阅|訂閱)",
        r"(?:申请|申請|开通|開通)(?:订阅|訂閱)",
        r"加我(?:到|进|進|入)",
        r"(?:把我|将我|將我)(?<!不要..)(?<![别別]..)(?:的(?:邮箱|郵箱|信箱|地址|邮件地址|郵件地址|电邮|電郵))?"
        r"(?:加入|添加|加到|加进|加進)",
        r"(?:用|以|改用|使用|换成|換成)(?:这个|這個|此|新的?|本)(?:邮箱|郵箱|信箱|地址|邮件地址|郵件地址)"
        r"[^.!?。！？\n]{0,3}?(?:订阅|訂閱)",
        r"(?:帮|幫|给|給|替)我(?:订阅|訂閱|登记|登記|加入)",
        r"^(?:订阅|訂閱)(?:电子报|電子報|简报|簡報|通讯|通訊)?$",
    ),
    third_person=(
        r"同事|朋友|上司|下属|下屬|员工|員工|离职|離職|代替|秘书|秘書|老板|老闆|领导|領導|经理|經理"
        r"|主管|先生|女士|小姐|老公|老婆|太太|丈夫(?<!大丈夫)|妻子|退休",  # not Japanese 大丈夫
        # he, she; not "other": Chinese 其他, Japanese その他, 他の, 他に, 他社
        r"他(?<![其の]他)(?![のにはもで社])|她",
    ),
    self_words=(r"我",),
)

GERMAN = Language(
    "de",
    unsubscribe=(
        r"\babbestell\w*",
        r"\babmeld\w*",
        r"\bkündig\w*",
        r"\baustragen\b|\bausgetragen\b|\btragen sie mich\b" + _GAP + r"{0,20}\baus\b",
        # "keine … mehr" and "nicht mehr" only as a request (bitte, möchte, schicken Sie…):
        # "Ich habe keine E-Mail erhalten" and "seit Mai nicht mehr erhalten" are complaints
        r"\bnicht (?:mehr|länger)\b" + _CLAUSE + r"{0,30}?\b(?:zu)?(?:senden|schicken)\b",
        r"\b(?:möchte|möchten|will|wollen|wünsche|brauche|benötige|mag|würde|würden|hätte|hätten)\b"
        + _CLAUSE
        + r"{0,40}?\b(?:nicht (?:mehr|länger)|keine (?:weiteren )?(?:e-?mails?|mails?|newsletter"
        r"|nachrichten|zusendungen|ausgaben)|keinen (?:newsletter|digest))\b",
        r"\bbitte\b" + _CLAUSE + r"{0,20}?\b(?:nicht mehr|keine\b" + _CLAUSE + r"{0,30}?\bmehr)\b",
        r"\b(?:schicken|senden|mailen) sie (?:mir|uns)\b"
        + _CLAUSE
        + r"{0,30}?\b(?:keine|nicht mehr|nichts mehr)\b",
        r"^\s*keine (?:weiteren )?(?:e-?mails?|mails?|newsletter|nachrichten|zusendungen)\b",
        r"\bvom verteiler\b" + _GAP + r"{0,20}(?:nehmen|streichen|löschen|entfernen)",
        r"\b(?:aus|von) (?:dem|ihrem|diesem|der|ihrer|dieser|eurem|eurer) [\w-]{0,20}(?:verteiler"
        r"|liste)\b" + _CLAUSE + r"{0,20}?\b(?:nehmen|streichen|löschen|entfernen|austragen)\b",
        r"\bnehmen sie (?:bitte )?(?:mich|meine (?:e-?mail-?)?adresse)(?: bitte)? (?:aus|von) "
        r"(?:dem|ihrem|diesem|der|ihrer|dieser|eurem|eurer)\b",
        r"\b(?:streichen|entfernen|löschen) sie (?:bitte )?(?:mich|meine)\b",
        # the separable verb: "melden Sie mich (bitte) vom Newsletter ab", the "ab" ending
        # the clause (not "ab sofort", "ab und zu")
        r"\bmelden? (?:sie )?(?:bitte )?(?:mich|meine)\b"
        + _GAP
        + r"{0,40}?(?<!nicht )\bab(?=\s*(?:[.!,;]|$|bitte|danke|und (?!zu\b)))",
        r"\b(?:zusendung|versand|zustellung)\b"
        + _CLAUSE
        + r"{0,20}?\b(?:einstellen|beenden|stoppen)\b",
        r"\bstellen sie\b"
        + _CLAUSE
        + r"{0,30}?\b(?:zusendung|versand|zustellung)\b"
        + _CLAUSE
        + r"{0,20}?\bein\b",
        r"\babo(?:nnement)?\b" + _CLAUSE + r"{0,20}?\b(?:beenden|stornieren|aufheben|löschen"
        r"|einstellen)\b",
    ),
    subscribe=(
        r"\babonnier\w*",
        r"\banmeld\w*",
        r"\bmelden sie mich an\b",
        r"\bnehmen sie mich\b" + _GAP + r"{0,30}\bauf\b",
        r"\bin (?:den|ihren) verteiler\b",
        r"\b(?:möchte|würde|will)\b" + _GAP + r"{0,60}(?:erhalten|bekommen|abonnieren"
        r"|beziehen|aufgenommen|aufnehmen)",
        r"\bmich\b" + _GAP + r"{0,40}\baufnehmen\b",
        r"\bweiterhin (?:erhalten|bekommen|beziehen)\b",
        r"\bbitte (?:senden|schicken) sie mir\b",
        r"\bmelden? (?:sie )?(?:bitte )?mich\b"
        + _GAP
        + r"{0,40}?(?<!nicht )\ban(?=\s*(?:[.!,;]|$|bitte|danke))",
        r"\bmich\b"
        + _CLAUSE
        + r"{0,30}?\bauf (?:die|ihre|den|ihren|eure|euren) [\w-]{0,20}(?:liste"
        r"|verteiler)\b" + _CLAUSE + r"{0,10}?\b(?:setzen|nehmen)\b",
        r"\btragen sie (?:bitte )?mich\b"
        + _CLAUSE
        + r"{0,30}?\bein\b|\bmich\b"
        + _CLAUSE
        + r"{0,30}?\beintragen\b",
        r"\bhätte\b" + _CLAUSE + r"{0,15}?\bgerne?\b" + _CLAUSE + r"{0,30}?\b(?:newsletter|digest"
        r"|abo|abonnement)\b",
    ),
    third_person=(
        r"\b(?:mein(?:e[nr]?)?|unser(?:e[nr]?)?) (?:kolleg\w*|mitarbeiter\w*|chef\w*|assistent\w*"
        r"|sekretär\w*|nachfolger\w*|vorgänger\w*|freund\w*)",
        r"\b(?:ehemalig\w*|frühere[rn]?) (?:mitarbeiter\w*|kolleg\w*)",
        r"\b(?:er|sie) (?:ist|hat) (?:nicht mehr|ausgeschieden|das unternehmen verlassen)",
        r"\bim auftrag von\b|\bim namen von\b",
        # a named person, not the greeting "Sehr geehrte Frau …", "Liebe Frau …"
        r"\bherrn [a-zäöüß]{2,20}\b|\bfrau(?<!geehrte frau)(?<!liebe frau)(?<!hallo frau) [a-zäöüß]{2,20}\b",
    ),
    self_words=(r"\b(?:mich|ich|mir|meine e-?mail|meine adresse)\b",),
)

FRENCH = Language(
    "fr",
    unsubscribe=(
        r"\bd[ée]sabonn(?<!ne me d.sabonn)(?<!ne pas me d.sabonn)\w*",  # not "ne me désabonnez pas"
        r"\bd[ée]sinscri\w*",
        r"\bd[ée]sinscription\b",
        r"\bretir(?:e[rz]?|ée?s?)\b" + _GAP + r"{0,30}\b(?:liste|adresse|de vos envois|diffusion)",
        r"\b(?:être|etre) (?:retiré|supprimé|désinscrit|desinscrit|enlevé|radié)",
        r"\bm'enlever\b|\benlevez-moi\b|\benlever\b"
        + _GAP
        + r"{0,30}\b(?:liste|adresse|diffusion)",
        r"\bsupprime[rz]?\b" + _GAP + r"{0,30}\b(?:liste|adresse|mon e-?mail|diffusion)",
        r"\bne (?:plus|pas) (?:m'envoyer|recevoir|me l'envoyer)\b",
        r"\b(?:ne |n')?(?:souhaite|veux|désire|voulons|souhaitons) plus\b"
        + _GAP
        + r"{0,30}\brecevoir\b",
        r"\bne (?:veux|souhaite|désire|voulons|souhaitons) plus (?:de |d')(?:vos |ces |cette |votre "
        r"|la |les )?(?:e-?mails?|mails?|courriels?|messages|envois?|newsletters?|lettres?"
        r"|infolettres?)\b",
        # "résilier / annuler mon abonnement": the span takes "abonnement" along, which alone
        # reads as a subscription request
        r"\br[ée]sili(?:e[rz]?|ation|[ée]e?)\b(?:" + _GAP + r"{0,20}?\babonnement\b)?",
        r"\b(?:annule[rz]?|arr[êe]te[rz]?|stoppe[rz]?|mettre fin [àa]|terminer|suspendre)\b"
        + _GAP
        + r"{0,20}?\babonnement\b",
        r"\barr[êe]te[rz]?\b" + _GAP + r"{0,30}\b(?:envoi|envois|m'envoyer|newsletter|lettre)",
        r"\bme retirer\b",
    ),
    subscribe=(
        r"\bm'abonner\b|\babonnez-moi\b|\bje m'abonne\b|\babonnement\b",
        r"\bm'inscrire\b|\binscrivez-moi\b|\binscription\b",
        r"\b(?:souhaite|voudrais|aimerais|désire|veux)\b" + _GAP + r"{0,40}\brecevoir\b",
        r"\bajoute[rz]?[- ]moi\b|\bm'ajouter\b",
        r"\bmerci de m'envoyer\b|\benvoyez-moi\b",
        r"\bcontinuer [àa] recevoir\b",
    ),
    third_person=(
        r"\b(?:mon|ma|mes|notre|nos) (?:coll[èe]gues?|assistante?s?|ami[e]?s?|chef|directeur"
        r"|directrice|successeur|employ[ée]e?s?|secr[ée]taire)\b",
        r"\b(?:ancien(?:ne)?s?) (?:coll[èe]gues?|employ[ée]e?s?|membres?)\b",
        r"\b(?:il|elle) a quitt[ée]\b|\bn'est plus (?:chez|avec|parmi)\b",
        r"\bde la part de\b|\bau nom de\b",
        r"\b(?:il|elle) est (?:partie?|à la retraite|décédée?)\b|\b(?:il|elle) ne travaille plus\b",
        r"\b(?:la|le|les|lui) (?:d[ée]sabonner|d[ée]sinscrire|inscrire|abonner)\b",
        r"\b(?:mme|mlle)\b|\bm(?<![.\w]m)\. [a-z]|\b(?:monsieur|madame) [a-zàâçéèêëîïôûùüÿ]{2,20}\b",
    ),
    self_words=(r"\b(?:moi|me|m'|je|mon adresse|mon e-?mail)\b",),
)

SPANISH = Language(
    "es",
    unsubscribe=(
        # not "no me den de baja", "no quiero darme de baja"
        r"\bdar(?<!no quiero dar)(?<!no deseo dar)(?:me)? de baja\b|\bden(?<!no me den) de baja\b"
        r"|\bde(?<!no me den de)(?<!no me des de)(?<!no quiero darme de) baja\b",
        r"\bdesuscrib\w*|\bdesinscrib\w*|\bcancelar (?:mi |la )?suscripci[óo]n\b",
        r"\b(?:elimin|elim[íi]n|quit|qu[íi]t|borr|b[óo]rr|sac|s[áa]qu)(?:ar|en|e|an)(?:me|nos)?\b"
        + _GAP
        + r"{0,30}\b(?:lista|env[íi]os|correo)",
        r"\bno (?:quiero|deseo|quisiera|necesito) (?:seguir |continuar )?recibi(?:r|endo)\b",
        r"\bdejen? de (?:enviar|mandar)(?:me|nos)?\b",
        r"\b(?:cancel|anul|termin|finaliz|suspend)\w{0,6}\b" + _GAP + r"{0,20}?\bsuscripci[óo]n\b",
        r"\bya no me interesa\b|\bno me interesa (?:seguir )?recibi\w{0,4}",
        r"\b(?:gustar[íi]a|prefiero|preferir[íi]a|quisiera|quiero|deseo|pido) no (?:seguir )?recibi",
        r"\bya no (?:quiero|deseo) recibir\b",
        r"\bno (?:me )?(?:manden|env[íi]en|mande|env[íi]e|sigan enviando) m[áa]s\b",
        r"^\s*baja\b|\bbaja,? por favor\b|\b(?:solicito|pido|quiero|deseo) (?:la |darme de )?baja\b",
    ),
    subscribe=(
        r"\bsuscr[ií]b\w*|\bsuscripci[óo]n\b",
        r"\b(?:quiero|deseo|prefiero) seguir recibi",
        r"\bdarme de alta\b|\bdar de alta\b",
        r"\b(?:quiero|quisiera|deseo|me gustar[íi]a)\b" + _GAP + r"{0,40}\brecibir\b",
        r"\bagr[ée]g(?:uen|ue|ar|a)me\b|\ba[ñn][áa]danme\b|\bincl[úu]yanme\b",
        r"\bme interesa(?:r[íi]a)? recibir\b",
        r"\bap[úu]nt(?:en|e|a)me\b|\bapuntarme\b|\ban[óo]t(?:en|e|a)me\b|\banotarme\b",
        r"\benv[íi]enme\b|\bm[áa]ndenme\b",
    ),
    third_person=(
        r"\b(?:mi|mis|nuestro|nuestra|nuestros|nuestras) (?:colegas?|compa[ñn]er[oa]s?"
        r"|asistentes?|amig[oa]s?|jef[ea]|secretari[oa]|emplead[oa]s?|director[a]?|gerente"
        r"|espos[oa]|marido|mujer|hij[oa]s?)\b",
        # him, her on the verb: denla de baja, bórrenlo, suscríbanla
        r"\b(?:den|d[ée]n|borren|b[óo]rren|saquen|s[áa]quen|eliminen|elim[íi]nen|quiten|qu[íi]ten"
        r"|suscriban|suscr[íi]ban|agreguen|agr[ée]guen|incluyan|incl[úu]yan|apunten|ap[úu]nten)"
        r"(?:la|lo|le|los|las)\b",
        r"\b(?:ex|antigu[oa]) (?:emplead[oa]|colega|compa[ñn]er[oa])",
        r"\b(?:ya no trabaja|dej[óo] la)\b",
        r"\ben nombre de\b",
    ),
    self_words=(r"\b(?:me|mi correo|mi direcci[óo]n|yo|darme)\b",),
)

LANGUAGES = (ENGLISH, JAPANESE, KOREAN, CHINESE, GERMAN, FRENCH, SPANISH)
