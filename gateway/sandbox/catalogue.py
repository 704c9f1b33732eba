"""Every method name Telegram's Bot API server knows, lower-case.

Taken from the method table of Telegram's own server (tdlib/telegram-bot-api, `Client.cpp`,
`methods_.emplace(...)`, plus `close` and `logOut`, which it handles before the table). The
sandbox emulates a subset; a name in this catalogue that it does not emulate answers 400 (a
client shows "bad request", never "invalid token"), any other name answers Telegram's own 404
`Not Found: method not found`.
"""

from __future__ import annotations

_NAMES = """
    close logout getme getmycommands setmycommands deletemycommands
    getmydefaultadministratorrights setmydefaultadministratorrights getmyname setmyname
    setmyprofilephoto removemyprofilephoto getmydescription setmydescription
    getmyshortdescription setmyshortdescription getchatmenubutton setchatmenubutton
    getuserprofilephotos getuserprofileaudios sendmessage sendanimation sendaudio senddice
    senddocument sendlivephoto sendphoto sendsticker sendvideo sendvideonote sendvoice
    sendpaidmedia sendgame sendinvoice sendlocation sendvenue sendcontact sendpoll stoppoll
    sendchecklist copymessage copymessages forwardmessage forwardmessages sendmediagroup
    sendchataction sendmessagedraft setmessagereaction editmessagetext editmessagelivelocation
    stopmessagelivelocation editmessagemedia editmessagecaption editmessagechecklist
    editmessagereplymarkup deletemessage deletemessages deletemessagereaction
    deleteallmessagereactions poststory repoststory editstory deletestory createinvoicelink
    getmystarbalance getstartransactions refundstarpayment edituserstarsubscription
    getavailablegifts sendgift giftpremiumsubscription getmanagedbottoken
    getmanagedbotaccesssettings setmanagedbotaccesssettings replacemanagedbottoken verifyuser
    verifychat removeuserverification removechatverification setgamescore getgamehighscores
    answerwebappquery answerguestquery answerinlinequery savepreparedinlinemessage
    savepreparedkeyboardbutton answercallbackquery answershippingquery answerprecheckoutquery
    exportchatinvitelink createchatinvitelink createchatsubscriptioninvitelink
    editchatinvitelink editchatsubscriptioninvitelink revokechatinvitelink
    getbusinessconnection readbusinessmessage deletebusinessmessages setbusinessaccountname
    setbusinessaccountusername setbusinessaccountbio setbusinessaccountprofilephoto
    removebusinessaccountprofilephoto setbusinessaccountgiftsettings
    getbusinessaccountstarbalance transferbusinessaccountstars getbusinessaccountgifts
    getusergifts getchatgifts convertgifttostars upgradegift transfergift setuseremojistatus
    getchat getuserpersonalchatmessages setchatphoto deletechatphoto setchattitle
    setchatpermissions setchatdescription pinchatmessage unpinchatmessage unpinallchatmessages
    approvesuggestedpost declinesuggestedpost setchatstickerset deletechatstickerset
    getforumtopiciconstickers createforumtopic editforumtopic closeforumtopic
    reopenforumtopic deleteforumtopic unpinallforumtopicmessages editgeneralforumtopic
    closegeneralforumtopic reopengeneralforumtopic hidegeneralforumtopic
    unhidegeneralforumtopic unpinallgeneralforumtopicmessages getchatmember
    getchatadministrators getchatmembercount getchatmemberscount leavechat promotechatmember
    setchatadministratorcustomtitle setchatmembertag banchatmember kickchatmember
    restrictchatmember unbanchatmember banchatsenderchat unbanchatsenderchat
    approvechatjoinrequest declinechatjoinrequest getuserchatboosts getstickerset
    getcustomemojistickers uploadstickerfile createnewstickerset addstickertoset
    replacestickerinset setstickersettitle setstickersetthumb setstickersetthumbnail
    setcustomemojistickersetthumbnail deletestickerset setstickerpositioninset
    deletestickerfromset setstickeremojilist setstickerkeywords setstickermaskposition
    setpassportdataerrors sendcustomrequest answercustomquery getupdates setwebhook
    deletewebhook getwebhookinfo getfile
"""
BOT_API_METHODS = frozenset(_NAMES.split())
